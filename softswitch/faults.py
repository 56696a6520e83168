"""Fault injection at the softswitch's ports: frames lost on the way in or out, chosen by a hook.

`LossyDevice` wraps a device (anything with ``process_packet(port, frame)``) so that the packet loop, tests and
benches lose frames exactly where a lossy link would: before the pipeline sees them, or after it emitted them.
`random_loss` is the seeded, independent-per-frame hook behind ``omnireduce-switch --loss P``.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Callable

#: lose(direction, port, frame) -> True drops the frame; direction is "in" (to the pipeline) or "out" (emitted).
LossHook = Callable[[str, int, bytes], bool]


class LossyDevice:
    """A device whose frames in and out pass the `lose` hook first (None: nothing is lost).

    `lost` counts the frames dropped, by direction. Other attributes are the wrapped device's.
    """

    def __init__(self, device, lose: LossHook | None) -> None:
        self.device = device
        self.lose = lose
        self.lost: Counter[str] = Counter()

    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        lose = self.lose
        if lose is not None and lose("in", port, frame):
            self.lost["in"] += 1
            return []
        outputs = self.device.process_packet(port, frame)
        if lose is None:
            return outputs
        kept = [(out_port, out) for out_port, out in outputs if not lose("out", out_port, out)]
        self.lost["out"] += len(outputs) - len(kept)
        return kept

    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """The batch path of the packet loop, with the same losses as one frame at a time (a lossy device must not
        let a batch through untouched)."""
        lose = self.lose
        if lose is None:
            return self.device.process_batch(frames)
        kept_in = [(port, frame) for port, frame in frames if not lose("in", port, frame)]
        self.lost["in"] += len(frames) - len(kept_in)
        outputs = self.device.process_batch(kept_in) if kept_in else []
        kept = [(out_port, out) for out_port, out in outputs if not lose("out", out_port, out)]
        self.lost["out"] += len(outputs) - len(kept)
        return kept

    def process_arrays(self, *args) -> bool:
        """Without a hook, the device's own array path; with one, False: the caller takes the per-frame path,
        where frames can be lost one by one (forwarding it through __getattr__ would bypass the losses)."""
        process_arrays = getattr(self.device, "process_arrays", None)
        if self.lose is not None or process_arrays is None:
            return False
        return process_arrays(*args)

    def __getattr__(self, name: str):
        return getattr(self.device, name)


def random_loss(probability: float, seed: int = 0) -> LossHook:
    """Each frame, in either direction, is lost with `probability`, independently; reproducible from `seed`."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"loss probability must be in [0, 1), got {probability}")
    rng = random.Random(seed)
    lock = threading.Lock()  # the hook may be called from the packet loop and from tests' threads

    def lose(direction: str, port: int, frame: bytes) -> bool:
        with lock:
            return rng.random() < probability

    return lose
