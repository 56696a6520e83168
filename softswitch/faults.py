"""Fault injection at the softswitch's ports: frames lost, duplicated, reordered or delayed on the way in or out.

Two wrappers of a device (anything with ``process_batch(frames)`` / ``process_packet(port, frame)``), both placed
between the ports and the pipeline, where a faulty link would act on frames: before the pipeline sees them
("in"), or after it emitted them ("out").

- `ImpairedDevice` applies an `ImpairmentPlan`: per port and direction, the probability that a frame is dropped,
  duplicated or held back behind the next frame (reordered), and a delay with jitter; the names and the meaning
  follow Linux's netem, which the Mininet testbed puts on its links instead (docs/reliability.md). Every draw comes
  from a random generator of its own (port, direction), seeded from one seed, so each link's sequence of
  decisions is reproducible whatever the other links carry. `omnireduce-switch --impair SPEC --impair-seed N`.
- `LossyDevice` loses the frames a hook chooses (tests that drop one particular packet); `random_loss` is the
  seeded hook of independent losses.
"""

from __future__ import annotations

import heapq
import itertools
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Iterable

#: lose(direction, port, frame) -> True drops the frame; direction is "in" (to the pipeline) or "out" (emitted).
LossHook = Callable[[str, int, bytes], bool]

DIRECTIONS = ("in", "out")

#: Longest a reordered frame waits for a frame to overtake it before it goes out anyway (a link reorders frames of a
#: stream; it does not hold the last frame of a burst for ever). The `hold` key of a spec overrides it.
DEFAULT_REORDER_HOLD_S = 0.02


class ImpairmentError(ValueError):
    """An impairment spec that cannot be understood; the message says which part and what is allowed."""


@dataclass(frozen=True, slots=True)
class Impairment:
    """What one link does to each frame, in netem's terms.

    drop, duplicate, reorder: probabilities, each drawn independently per frame (a duplicate is an exact copy sent
    right after the frame; a reordered frame is held back until the next frame of its port and direction has
    passed, or for `reorder_hold_s` when none comes). delay_s: every frame is held this long, plus a uniform
    jitter of up to +-jitter_s (so jitter alone reorders frames, as it does in netem).
    """

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    reorder_hold_s: float = DEFAULT_REORDER_HOLD_S

    def __post_init__(self) -> None:
        for item in fields(self):
            _check_value(item.name, getattr(self, item.name))
        if self.jitter_s > self.delay_s:
            raise ImpairmentError(f"jitter ({self.jitter_s * 1e3:g} ms) must not exceed the delay "
                                  f"({self.delay_s * 1e3:g} ms), as in netem")

    @property
    def active(self) -> bool:
        return bool(self.drop or self.duplicate or self.reorder or self.delay_s)

    def describe(self) -> str:
        """The spec text of this impairment (what `parse_rule` reads back); '' for none."""
        return ",".join(f"{_SPEC_KEY[attribute]}={_format_value(attribute, getattr(self, attribute))}"
                        for attribute in _SPEC_KEY if getattr(self, attribute) != getattr(NO_IMPAIRMENT, attribute))


#: spec key -> Impairment attribute; probabilities take 0.01 or 1%, times a unit (5ms, 250us, 0.1s).
_KEYS = {"drop": "drop", "loss": "drop", "duplicate": "duplicate", "dup": "duplicate", "reorder": "reorder",
         "delay": "delay_s", "jitter": "jitter_s", "hold": "reorder_hold_s"}
#: Impairment attribute -> the key specs are written with.
_SPEC_KEY = {"drop": "drop", "duplicate": "duplicate", "reorder": "reorder", "delay_s": "delay", "jitter_s": "jitter",
             "reorder_hold_s": "hold"}
_PROBABILITIES = {"drop", "duplicate", "reorder"}
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def _check_value(attribute: str, value: float) -> None:
    if attribute in _PROBABILITIES:
        if not 0.0 <= value < 1.0:
            raise ImpairmentError(f"{attribute} must be a probability in [0, 1), got {value}")
    elif not 0.0 <= value <= 60.0:
        raise ImpairmentError(f"{_SPEC_KEY[attribute]} must be in [0, 60] s, got {value}")


def _format_value(attribute: str, value: float) -> str:
    if attribute in _PROBABILITIES:
        return f"{value:g}"
    return f"{value * 1e3:g}ms"


def _parse_value(key: str, text: str, spec: str) -> float:
    attribute = _KEYS[key]
    try:
        if attribute in _PROBABILITIES:
            value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
        else:
            match = re.fullmatch(r"([0-9.eE+-]+)(s|ms|us)", text)
            if not match:
                raise ImpairmentError(f"{spec!r}: {key}={text!r} needs a unit: s, ms or us (as in {key}=5ms)")
            value = float(match.group(1)) * _TIME_UNITS[match.group(2)]
    except ValueError as error:
        if isinstance(error, ImpairmentError):
            raise
        raise ImpairmentError(f"{spec!r}: {key}={text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImpairmentError(f"{spec!r}: {key}={text!r} is not a finite number")
    return value


NO_IMPAIRMENT = Impairment()


@dataclass(frozen=True, slots=True)
class ImpairmentRule:
    """Settings for one port (None: every port) and one direction (None: both)."""

    port: int | None
    direction: str | None
    settings: tuple[tuple[str, float], ...]  # (Impairment attribute, value), only those the spec gave

    @property
    def specificity(self) -> int:
        return (self.port is not None) * 2 + (self.direction is not None)

    def describe(self) -> str:
        where = ""
        if self.port is not None:
            where = f"{self.port}/{self.direction}:" if self.direction else f"{self.port}:"
        elif self.direction is not None:
            where = f"{self.direction}:"
        return where + ",".join(f"{_SPEC_KEY[attribute]}={_format_value(attribute, value)}"
                                for attribute, value in self.settings)


def parse_rule(spec: str) -> ImpairmentRule:
    """`[PORT[/in|out]:|in:|out:]KEY=VALUE[,KEY=VALUE...]`, for example `drop=1%`, `3/out:delay=5ms,jitter=1ms`,
    `in:duplicate=0.01`. Keys: drop (or loss), duplicate (or dup), reorder, delay, jitter, hold."""
    text = spec.strip()
    port = direction = None
    where, colon, body = text.rpartition(":")
    if colon:
        port_text, slash, direction_text = where.partition("/")
        if not slash and port_text in DIRECTIONS:
            direction, port_text = port_text, ""
        elif slash:
            if direction_text not in DIRECTIONS:
                raise ImpairmentError(f"{spec!r}: direction must be 'in' or 'out', got {direction_text!r}")
            direction = direction_text
        if port_text:
            try:
                port = int(port_text)
            except ValueError:
                raise ImpairmentError(f"{spec!r}: {port_text!r} is not a port number (or 'in'/'out')") from None
            if not 0 <= port <= 510:
                raise ImpairmentError(f"{spec!r}: port {port} is not in 0..510")
    settings: dict[str, float] = {}
    if not body:
        raise ImpairmentError(f"{spec!r}: no settings; give KEY=VALUE pairs such as drop=0.01,delay=2ms")
    for item in body.split(","):
        key, equals, value_text = item.strip().partition("=")
        if not equals or key not in _KEYS:
            raise ImpairmentError(f"{spec!r}: {item!r} is not KEY=VALUE with KEY one of "
                                  f"{', '.join(_SPEC_KEY.values())}")
        settings[_KEYS[key]] = _parse_value(key, value_text.strip(), spec)
    rule = ImpairmentRule(port, direction, tuple(settings.items()))
    for attribute, value in rule.settings:  # each value's range; combinations are checked per link by the plan
        try:
            _check_value(attribute, value)
        except ImpairmentError as error:
            raise ImpairmentError(f"{spec!r}: {error}") from None
    return rule


@dataclass(frozen=True, slots=True)
class ImpairmentPlan:
    """Impairments of every (port, direction): rules applied from the least specific (every port, both directions)
    to the most specific (one port, one direction), each setting only the keys it names; among rules of the same
    specificity, the later one wins."""

    rules: tuple[ImpairmentRule, ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> "ImpairmentPlan":
        plan = cls(tuple(parse_rule(spec) for spec in specs))
        plan.check()
        return plan

    @classmethod
    def uniform(cls, impairment: Impairment) -> "ImpairmentPlan":
        """The same impairment on every port, both ways."""
        settings = tuple((item.name, getattr(impairment, item.name)) for item in fields(Impairment)
                         if getattr(impairment, item.name) != getattr(NO_IMPAIRMENT, item.name))
        return cls((ImpairmentRule(None, None, settings),) if settings else ())

    def then(self, other: "ImpairmentPlan") -> "ImpairmentPlan":
        """This plan's rules followed by `other`'s (which win among rules of equal specificity)."""
        return ImpairmentPlan(self.rules + other.rules)

    def check(self) -> None:
        """Raise ImpairmentError if some (port, direction) ends up with an invalid combination (jitter > delay)."""
        ports = sorted({rule.port for rule in self.rules if rule.port is not None})
        for port in [None, *ports]:
            for direction in DIRECTIONS:
                self.for_link(port, direction)

    def for_link(self, port: int | None, direction: str) -> Impairment:
        settings: dict[str, float] = {}
        for rule in sorted(self.rules, key=lambda rule: rule.specificity):  # stable: later rules win ties
            if rule.port in (None, port) and rule.direction in (None, direction):
                settings.update(rule.settings)
        where = f"port {port} {direction}" if port is not None else f"every port {direction}"
        try:
            return replace(NO_IMPAIRMENT, **settings)
        except ImpairmentError as error:
            raise ImpairmentError(f"{where}: {error}") from None

    @property
    def active(self) -> bool:
        return any(self.for_link(rule.port, direction).active for rule in self.rules for direction in DIRECTIONS)

    def ports(self) -> set[int]:
        """Ports some rule names explicitly."""
        return {rule.port for rule in self.rules if rule.port is not None}

    def describe(self) -> list[str]:
        """One spec per rule, as `parse` reads them back."""
        return [rule.describe() for rule in self.rules]


@dataclass
class _Link:
    """One (direction, port): its impairment, its own random generator, and the frames it holds back."""

    impairment: Impairment
    rng: random.Random
    held: list[list] = field(default_factory=list)  # reordered frames waiting for the next frame: [frame, out]


class ImpairedDevice:
    """A device whose frames in and out pass through the impairments of `plan` (docs/reliability.md).

    Frames held for later (delayed, or reordered behind a frame that has not come yet) are released by the packet
    loop: `next_due()` says when the earliest is due, `release_due(now)` returns what leaves by then (frames held
    on the way in are run through the pipeline at that moment). `injected` counts what was done, by
    (kind, direction, port), kind one of drop, duplicate, reorder, delay. Other attributes are the wrapped device's.
    """

    def __init__(self, device, plan: ImpairmentPlan, seed: int = 0, clock: Callable[[], float] = time.monotonic):
        self.device = device
        self.clock = clock
        self.injected: Counter[tuple[str, str, int]] = Counter()
        self._lock = threading.RLock()
        self._sequence = itertools.count()
        self.reconfigure(plan, seed)

    def reconfigure(self, plan: ImpairmentPlan, seed: int) -> None:
        """Use `plan` and `seed` from now on (a bench's next run); frames already held still leave when due."""
        plan.check()
        with self._lock:
            self.plan = plan
            self.seed = seed
            self._links: dict[tuple[str, int], _Link] = {}
            if not hasattr(self, "_timed"):
                self._timed: list[tuple[float, int, str, int, list]] = []

    def injected_total(self, kind: str, direction: str | None = None) -> int:
        return sum(count for (what, way, _port), count in self.injected.items()
                   if what == kind and direction in (None, way))

    # --- the device interface ------------------------------------------------------------------------------------

    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        return self.process_batch([(port, frame)])

    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        now = self.clock()
        with self._lock:
            entering = self._impair("in", frames, now)
            outputs = self.device.process_batch(entering) if entering else []
            return self._impair("out", outputs, now)

    def process_arrays(self, *args) -> bool:
        """Always False: the caller (PacketLoop's ring ports) falls back to the per-frame path, process_batch, so
        every frame passes through the impairments. Forwarding this to the wrapped Device through __getattr__
        would run ring frames straight through the pipeline, bypassing drops, duplicates, reordering and delays."""
        return False

    def next_due(self) -> float | None:
        """When the earliest held frame is due (monotonic seconds), None when nothing is held."""
        with self._lock:
            timed = self._timed
            while timed and timed[0][4][1]:  # already sent (a reordered frame another frame released)
                heapq.heappop(timed)
            return timed[0][0] if timed else None

    def release_due(self, now: float | None = None) -> list[tuple[int, bytes]]:
        """Everything held that is due by `now`: frames leaving the switch, in order."""
        now = self.clock() if now is None else now
        outputs: list[tuple[int, bytes]] = []
        with self._lock:
            timed = self._timed
            while timed and timed[0][0] <= now:
                _due, _order, direction, port, entry = heapq.heappop(timed)
                if entry[1]:
                    continue
                entry[1] = True
                if direction == "out":
                    outputs.append((port, entry[0]))
                else:
                    outputs.extend(self._impair("out", self.device.process_batch([(port, entry[0])]), now))
        return outputs

    def __getattr__(self, name: str):
        return getattr(self.device, name)

    # --- impairing -----------------------------------------------------------------------------------------------

    def _link(self, direction: str, port: int) -> _Link:
        link = self._links.get((direction, port))
        if link is None:
            # A generator per link, seeded from (seed, direction, port): reproducible per link.
            rng = random.Random(f"{self.seed}/{direction}/{port}")
            link = _Link(self.plan.for_link(port, direction), rng)
            self._links[direction, port] = link
        return link

    def _impair(self, direction: str, frames: list[tuple[int, bytes]], now: float) -> list[tuple[int, bytes]]:
        """The frames that pass now; the others are dropped or held (self._timed)."""
        passed: list[tuple[int, bytes]] = []
        injected = self.injected
        for port, frame in frames:
            link = self._link(direction, port)
            impairment = link.impairment
            if not impairment.active:
                passed.append((port, frame))
                continue
            rng = link.rng
            if impairment.drop and rng.random() < impairment.drop:
                injected["drop", direction, port] += 1
                continue
            copies = 1
            if impairment.duplicate and rng.random() < impairment.duplicate:
                injected["duplicate", direction, port] += 1
                copies = 2
            for _copy in range(copies):
                if impairment.reorder and rng.random() < impairment.reorder:
                    injected["reorder", direction, port] += 1
                    entry = [frame, False]
                    link.held.append(entry)
                    self._hold(now + impairment.reorder_hold_s, direction, port, entry)
                    continue
                due = now
                if impairment.delay_s:
                    injected["delay", direction, port] += 1
                    due += max(0.0, impairment.delay_s + rng.uniform(-impairment.jitter_s, impairment.jitter_s))
                self._send(due, now, direction, port, [frame, False], passed)
                # The frames held back behind this one go right after it.
                for entry in link.held:
                    if not entry[1]:
                        self._send(due, now, direction, port, entry, passed)
                link.held.clear()
        return passed

    def _send(self, due: float, now: float, direction: str, port: int, entry: list,
              passed: list[tuple[int, bytes]]) -> None:
        entry[1] = True  # a reordered frame's hold deadline (in self._timed) is done with
        if due <= now:
            passed.append((port, entry[0]))
        else:
            self._hold(due, direction, port, [entry[0], False])

    def _hold(self, due: float, direction: str, port: int, entry: list) -> None:
        heapq.heappush(self._timed, (due, next(self._sequence), direction, port, entry))


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
