"""Meters as BMv2 runs them (bm_sim/meters.cpp), and the target clock they run on.

A cell of a meter array is a two-rate three-color marker. Unconfigured, it marks every packet GREEN (0). Configured
with (CIR, CBS, PIR, PBS) (rates in packets or bytes per second, bursts in packets or bytes), it keeps two token
buckets, each filled to its burst size when configured. BMv2's arithmetic, which this reproduces to the token:

- a rate is kept per microsecond as a double (`rate / 1e6`); a bucket's tokens since the time origin (the pipeline
  load) are `uint64(now_us * rate)`, and what was added since the bucket was last looked at is that minus the count
  at that time, capped at the burst size;
- the peak bucket is looked at first: too few tokens for the packet (1, or its length as received) makes it RED (2)
  and nothing else is looked at or taken; otherwise the packet's tokens are taken from it and the committed bucket
  is looked at the same way: too few is YELLOW (1), else the tokens are taken and the packet is GREEN (0).

The configuration read back is the one written (BMv2 converts its doubles back, which can lose a unit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import InvalidArgument, OutOfRange

GREEN, YELLOW, RED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """P4Runtime's MeterConfig: committed and peak information rates (units per second) and burst sizes."""

    cir: int
    cburst: int
    pir: int
    pburst: int

    def check(self, what: str) -> None:
        for name in ("cir", "cburst", "pir", "pburst"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 1 << 63:
                raise InvalidArgument(f"{what}: {name} {value!r} must be an integer >= 0")
        if self.pir < self.cir:
            raise InvalidArgument(f"{what}: the peak rate (pir {self.pir}) is below the committed rate "
                                  f"(cir {self.cir}); BMv2 refuses that too")


class TargetClock:
    """Microseconds since the pipeline was loaded: what meters and the global timestamps read. Tests can stop it at
    a value (Device.freeze_clock) to make meters reproducible."""

    __slots__ = ("t0", "frozen")

    def __init__(self) -> None:
        self.t0 = time.perf_counter_ns()
        self.frozen: int | None = None

    def now_us(self) -> int:
        frozen = self.frozen
        if frozen is not None:
            return frozen
        return (time.perf_counter_ns() - self.t0) // 1000


class MeterArrayState:
    """The cells of one meter array (a direct meter: one cell per entry slot of its table). Per cell, two buckets:
    index 2*i is the peak one, 2*i + 1 the committed one (BMv2's order of evaluation)."""

    __slots__ = ("name", "size", "unit", "configs", "configured", "rates", "bursts", "tokens", "last")

    def __init__(self, name: str, size: int, unit: str) -> None:
        self.name = name
        self.size = size
        self.unit = unit
        self.configs: list[MeterConfig | None] = [None] * size
        self.configured: list[int] = [0] * size
        self.rates: list[float] = [0.0] * (2 * size)
        self.bursts: list[int] = [0] * (2 * size)
        self.tokens: list[int] = [0] * (2 * size)
        self.last: list[int] = [0] * (2 * size)

    # -- packet path --------------------------------------------------------------------------------------
    def execute(self, index: int, amount: int, now_us: int) -> int:
        """The color of a packet of `amount` units at `now_us`; IndexError past the end (the caller's no-op)."""
        if not self.configured[index]:
            return GREEN
        rates, tokens, last = self.rates, self.tokens, self.last
        for i, color in ((2 * index, RED), (2 * index + 1, YELLOW)):
            since = int(now_us * rates[i])
            fresh = since - last[i]
            last[i] = since
            have = min(tokens[i] + fresh if fresh > 0 else tokens[i], self.bursts[i])
            if have < amount:
                tokens[i] = have
                return color
            tokens[i] = have - amount
        return GREEN

    # -- control plane ------------------------------------------------------------------------------------
    def _check_index(self, index: int) -> None:
        if not isinstance(index, int) or not 0 <= index < self.size:
            raise OutOfRange(f"meter '{self.name}' has {self.size} cells; index {index!r} is out of range")

    def set(self, index: int, config: MeterConfig | None) -> None:
        """Configure a cell (None: back to the default, every packet GREEN); its buckets start full."""
        self._check_index(index)
        if config is None:
            self.configs[index] = None
            self.configured[index] = 0
            return
        config.check(f"meter '{self.name}'[{index}]")
        self.configs[index] = config
        for i, (rate, burst) in ((2 * index, (config.pir, config.pburst)), (2 * index + 1, (config.cir, config.cburst))):
            self.rates[i] = rate / 1000000.0
            self.bursts[i] = burst
            self.tokens[i] = burst
            self.last[i] = 0
        self.configured[index] = 1

    def get(self, index: int) -> MeterConfig | None:
        self._check_index(index)
        return self.configs[index]

    def reset(self) -> None:
        for index in range(self.size):
            self.set(index, None)
