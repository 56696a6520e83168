# Run: .venv/bin/pytest tests/softswitch/test_faults.py
"""Fault injection at the softswitch's ports (softswitch/faults.py, `omnireduce-switch --loss`)."""

from __future__ import annotations

import pytest

from omnireduce.softswitch.cli import parse_args
from omnireduce.softswitch.faults import LossyDevice, random_loss


class EchoDevice:
    """Emits every frame it gets on two ports."""

    name = "echo"

    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        return [(port, frame), (port + 1, frame)]

    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        return [out for port, frame in frames for out in self.process_packet(port, frame)]


def test_the_hook_sees_each_direction_and_lost_frames_are_counted():
    seen = []

    def lose(direction, port, frame):
        seen.append((direction, port))
        return direction == "out" and port == 2 or frame == b"drop me"

    device = LossyDevice(EchoDevice(), lose)
    assert device.process_packet(1, b"x") == [(1, b"x")]
    assert device.process_packet(1, b"drop me") == []
    assert seen == [("in", 1), ("out", 1), ("out", 2), ("in", 1)]
    assert device.lost == {"in": 1, "out": 1}
    assert device.name == "echo"  # everything else is the wrapped device's
    # The packet loop's batch path loses frames alike.
    assert device.process_batch([(1, b"x"), (1, b"drop me"), (3, b"y")]) == [(1, b"x"), (3, b"y"), (4, b"y")]
    assert device.lost == {"in": 2, "out": 2}


def test_random_loss_is_reproducible_and_near_its_probability():
    first, second = random_loss(0.1, seed=7), random_loss(0.1, seed=7)
    draws = [first("in", 1, b"") for _ in range(20000)]
    assert draws == [second("in", 1, b"") for _ in range(20000)]
    assert 0.09 < sum(draws) / len(draws) < 0.11
    assert not any(random_loss(0.0)("out", 1, b"") for _ in range(1000))
    with pytest.raises(ValueError, match="loss probability"):
        random_loss(1.0)


def test_the_cli_takes_a_loss_probability_and_refuses_nonsense(capsys):
    config, _ = parse_args(["--no-p4", "--loss", "0.05", "--loss-seed", "3"])
    assert (config.loss, config.loss_seed) == (0.05, 3)
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(SystemExit):
            parse_args(["--no-p4", "--loss", bad])
        assert "--loss" in capsys.readouterr().err
