# Run: .venv/bin/pytest tests/softswitch/test_faults.py
"""Fault injection at the softswitch's ports (softswitch/faults.py): the hook-based LossyDevice, the seeded
impairments of ImpairedDevice (drop, duplicate, reorder, delay with jitter, per port and direction), their spec
syntax (`omnireduce-switch --impair`), and the packet loop releasing held frames. Time is a fake clock here, except
in the last tests (a real loop on 127.0.0.1), which only poll for frames, never time them."""

from __future__ import annotations

import socket
import threading

import pytest

from omnireduce.softswitch.cli import SwitchConfig, parse_args, setup
from omnireduce.softswitch.faults import (
    Impairment,
    ImpairedDevice,
    ImpairmentError,
    ImpairmentPlan,
    LossyDevice,
    parse_rule,
    random_loss,
)
from omnireduce.softswitch.ports import parse_port_spec
from tests.polling import wait_until

TIMEOUT = 5.0


class EchoDevice:
    """Emits every frame it gets on two ports."""

    name = "echo"

    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        return [(port, frame), (port + 1, frame)]

    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        return [out for port, frame in frames for out in self.process_packet(port, frame)]


class Mirror:
    """Emits every frame once, on the port it came in on; remembers what it processed."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes]] = []

    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        self.seen.extend(frames)
        return list(frames)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def impaired(*specs: str, seed: int = 0) -> tuple[ImpairedDevice, Mirror, FakeClock]:
    clock = FakeClock()
    mirror = Mirror()
    return ImpairedDevice(mirror, ImpairmentPlan.parse(specs), seed, clock=clock), mirror, clock


def tag(index: int) -> bytes:
    return index.to_bytes(2, "big")


def frames(count: int, port: int = 1) -> list[tuple[int, bytes]]:
    return [(port, tag(index)) for index in range(count)]


def send_each(device: ImpairedDevice, items: list[tuple[int, bytes]]) -> list[bytes]:
    out = []
    for item in items:
        out += [frame for _port, frame in device.process_batch([item])]
    return out


# --- LossyDevice (hook) ---------------------------------------------------------------------------------------------


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


# --- the spec syntax ------------------------------------------------------------------------------------------------


def test_specs_name_ports_and_directions_and_the_most_specific_wins_per_key():
    plan = ImpairmentPlan.parse(["drop=1%,delay=4ms", "in:duplicate=0.02", "3:reorder=0.1,hold=5ms",
                                 "3/out:delay=5ms,jitter=1ms", "drop=0.5%"])
    assert plan.for_link(1, "in") == Impairment(drop=0.005, duplicate=0.02, delay_s=0.004)
    assert plan.for_link(1, "out") == Impairment(drop=0.005, delay_s=0.004)
    assert plan.for_link(3, "in") == Impairment(drop=0.005, duplicate=0.02, reorder=0.1, delay_s=0.004,
                                                reorder_hold_s=0.005)
    assert plan.for_link(3, "out") == Impairment(drop=0.005, reorder=0.1, delay_s=0.005, jitter_s=0.001,
                                                 reorder_hold_s=0.005)
    assert plan.ports() == {3}
    # What describe() writes, parse() reads back.
    assert ImpairmentPlan.parse(plan.describe()) == plan
    assert parse_rule("loss=0.25,dup=1%,delay=250us").settings == (("drop", 0.25), ("duplicate", 0.01),
                                                                   ("delay_s", 0.00025))
    assert not ImpairmentPlan.parse(["drop=0"]).active and ImpairmentPlan.parse(["2:drop=0.1"]).active


@pytest.mark.parametrize("spec, message", [
    ("drop=1.5", "drop must be a probability in \\[0, 1\\)"),
    ("duplicate=-0.1", "duplicate must be a probability"),
    ("drop=nan", "not a finite number"),
    ("delay=5", "needs a unit: s, ms or us"),
    ("delay=2min", "needs a unit"),
    ("delay=90s", "delay must be in \\[0, 60\\] s"),
    ("jitter=1ms", "jitter \\(1 ms\\) must not exceed the delay \\(0 ms\\)"),
    ("drop", "is not KEY=VALUE"),
    ("corrupt=0.1", "KEY one of drop, duplicate, reorder, delay, jitter, hold"),
    ("x:drop=0.1", "'x' is not a port number"),
    ("511:drop=0.1", "port 511 is not in 0..510"),
    ("2/up:drop=0.1", "direction must be 'in' or 'out'"),
    ("3:", "no settings"),
])
def test_bad_specs_are_refused_saying_what_is_wrong(spec, message):
    with pytest.raises(ImpairmentError, match=message):
        ImpairmentPlan.parse([spec])


def test_a_rule_may_set_jitter_on_top_of_another_rules_delay():
    plan = ImpairmentPlan.parse(["delay=5ms", "2:jitter=2ms"])
    assert plan.for_link(2, "out") == Impairment(delay_s=0.005, jitter_s=0.002)
    with pytest.raises(ImpairmentError, match="port 2 in: jitter"):
        ImpairmentPlan.parse(["out:delay=5ms", "2:jitter=2ms"])


# --- what ImpairedDevice does to frames ----------------------------------------------------------------------------


def test_drop_and_duplicate_follow_their_probabilities_per_link():
    device, mirror, _clock = impaired("in:drop=0.2", "out:duplicate=0.1", seed=3)
    sent = frames(5000)
    out = send_each(device, sent)
    dropped = device.injected_total("drop", "in")
    duplicated = device.injected_total("duplicate", "out")
    assert 0.17 < dropped / 5000 < 0.23 and 0.08 < duplicated / (5000 - dropped) < 0.12
    assert len(mirror.seen) == 5000 - dropped and len(out) == len(mirror.seen) + duplicated
    assert device.injected_total("drop", "out") == device.injected_total("duplicate", "in") == 0
    # A duplicate is the same frame again, right after it.
    assert sum(out[i] == out[i + 1] for i in range(len(out) - 1)) == duplicated


def test_each_link_draws_from_its_own_seeded_generator():
    """The decisions on port 1 depend on the seed and port 1's frames only, not on what other ports carry."""
    alone, _, _ = impaired("drop=0.3", seed=11)
    mixed, _, _ = impaired("drop=0.3", seed=11)
    other, _, _ = impaired("drop=0.3", seed=12)
    port1 = frames(200, port=1)
    interleaved = [item for pair in zip(port1, frames(200, port=2)) for item in pair]
    kept_alone = [frame for port, frame in port1 if send_each(alone, [(port, frame)])]
    kept_mixed = [frame for port, frame in interleaved if send_each(mixed, [(port, frame)]) and port == 1]
    kept_other = [frame for port, frame in port1 if send_each(other, [(port, frame)])]
    assert kept_alone == kept_mixed
    assert kept_alone != kept_other


def test_a_reordered_frame_goes_right_after_the_next_frame_of_its_link():
    device, _mirror, clock = impaired("1/in:reorder=0.3", seed=5)
    out = send_each(device, frames(200))
    held = device.injected_total("reorder", "in")
    assert held > 30
    # Nothing is lost, and every frame is at most a few places from where it was sent (swapped, not scattered).
    clock.now += 1.0
    out += [frame for _port, frame in device.release_due()]
    assert sorted(out) == [tag(index) for index in range(200)]
    assert out != sorted(out)
    positions = {frame: place for place, frame in enumerate(out)}
    assert max(abs(positions[tag(index)] - index) for index in range(200)) <= 8
    # Port 2 is not impaired: its frames keep their order.
    assert send_each(device, frames(50, port=2)) == [tag(index) for index in range(50)]


def test_a_held_frame_with_no_frame_after_it_leaves_after_the_hold():
    device, mirror, clock = impaired("reorder=0.99,hold=10ms", seed=1)
    assert send_each(device, [(1, b"alone")]) == []
    assert device.next_due() == pytest.approx(clock.now + 0.010)
    clock.now += 0.005
    assert device.release_due() == []
    clock.now += 0.006
    # Held on the way in: it reaches the pipeline only now, and its output may be held again on the way out.
    released = device.release_due()
    assert mirror.seen == [(1, b"alone")]
    clock.now += 1.0
    released += device.release_due()
    assert released == [(1, b"alone")] and device.next_due() is None


def test_delay_and_jitter_hold_frames_until_due_and_jitter_reorders():
    device, mirror, clock = impaired("out:delay=10ms,jitter=5ms", seed=2)
    start = clock.now
    for index in range(100):
        assert device.process_batch([(1, tag(index))]) == []
        clock.now += 0.0005
    assert len(mirror.seen) == 100  # "in" is not impaired: every frame reached the pipeline at once
    assert start + 0.005 <= device.next_due() <= start + 0.015
    out = []
    while (due := device.next_due()) is not None:
        clock.now = due
        out += [frame for _port, frame in device.release_due()]
    assert sorted(out) == [tag(index) for index in range(100)] and out != sorted(out)
    assert device.injected_total("delay", "out") == 100


def test_frames_delayed_on_the_way_in_reach_the_pipeline_when_due():
    device, mirror, clock = impaired("in:delay=20ms", seed=0)
    assert device.process_batch(frames(3)) == []
    assert mirror.seen == []
    clock.now += 0.02
    assert [frame for _port, frame in device.release_due()] == [tag(0), tag(1), tag(2)]
    assert mirror.seen == frames(3)


def test_reconfigure_changes_the_plan_and_restarts_every_links_draws():
    device, _mirror, _clock = impaired("drop=0.5", seed=9)
    first = send_each(device, frames(100))
    device.reconfigure(ImpairmentPlan.parse(["drop=0.5"]), 9)
    assert send_each(device, frames(100)) == first
    device.reconfigure(ImpairmentPlan(), 0)
    assert send_each(device, frames(100)) == [frame for _port, frame in frames(100)]


# --- the command line and the packet loop -------------------------------------------------------------------------


def test_the_cli_takes_impairments_and_loss_and_refuses_nonsense(capsys):
    config, _ = parse_args(["--no-p4", "--loss", "0.05", "--loss-seed", "3"])
    assert config.impairments.for_link(1, "in") == Impairment(drop=0.05) and config.impair_seed == 3
    config, _ = parse_args(["--no-p4", "--impair", "drop=1%", "--impair", "2/out:delay=5ms,jitter=1ms",
                            "--impair-seed", "7"])
    assert config.impairments.describe() == ["drop=0.01", "2/out:delay=5ms,jitter=1ms"]
    assert config.impair_seed == 7
    # --loss is a first drop rule: a later --impair overrides it.
    config, _ = parse_args(["--no-p4", "--loss", "0.1", "--impair", "3:drop=0"])
    assert config.impairments.for_link(3, "out").drop == 0 and config.impairments.for_link(1, "out").drop == 0.1
    assert parse_args(["--no-p4"])[0].impairments is None  # no impairment layer at all
    for bad in (["--loss", "1.5"], ["--loss", "nan"], ["--impair", "drop=2"], ["--impair", "jitter=1ms"]):
        with pytest.raises(SystemExit):
            parse_args(["--no-p4", *bad])
        error = capsys.readouterr().err
        assert "--loss" in error or "--impair" in error


@pytest.fixture
def mirror_switch():
    """A softswitch process's loop in this process: port 1 on 127.0.0.1, impaired, around a mirroring device."""
    config = SwitchConfig(json_path=None, ports=(parse_port_spec("1@udp:127.0.0.1:0"),), grpc_address=None,
                          impairments=ImpairmentPlan.parse(["out:delay=30ms"]), impair_seed=1)
    switch = setup(config=config)
    switch.loop.device.device = Mirror()  # stands in for a pipeline: frames come back out of their port
    yield switch
    switch.stop()


def test_the_packet_loop_releases_delayed_frames(mirror_switch):
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(TIMEOUT)
    with client:
        client.sendto(b"hello", mirror_switch.loop.ports[1].bound)
        # Nobody else wakes the loop: it must wake up by itself when the frame is due.
        assert client.recvfrom(100)[0] == b"hello"
    assert mirror_switch.loop.device.injected_total("delay", "out") == 1


def test_submit_runs_work_on_the_packet_thread_between_batches(mirror_switch):
    loop = mirror_switch.loop
    future = loop.submit(lambda: threading.current_thread().name)
    assert future.result(TIMEOUT) == "softswitch-packets"
    failing = loop.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(TIMEOUT)
    results = [loop.submit(lambda index=index: index) for index in range(200)]
    wait_until(lambda: all(result.done() for result in results), TIMEOUT, "200 submitted calls to run")
    assert [result.result() for result in results] == list(range(200))


def test_an_impaired_device_sends_array_frames_the_per_frame_way():
    # Forwarding process_arrays to the wrapped device would let ring ports' frames bypass the impairments.
    class ArrayDevice(EchoDevice):
        def process_arrays(self, *args):
            raise AssertionError("the impairments were bypassed")

    assert ImpairedDevice(ArrayDevice(), ImpairmentPlan.parse(["drop=0.5"])).process_arrays(None, None, None, 0,
                                                                                            None) is False
