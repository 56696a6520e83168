"""The native packet engine: the Device's packet path when the program runs as compiled C.

The Python side stays the one source of truth for the control plane: tables (TableRuntime), the PRE and the
program. Each has a version that changes with it; before running packets the engine copies whatever changed
into the C state (tables in their match precedence order, exact tables hashed natively). Registers and
indirect counters live in C memory and are seen from Python through numpy views; direct counters are counted
in C per entry and folded back into the entries' Python counters before the control plane reads them or the
table is reloaded.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import Counter
from typing import Any

import numpy as np

from ..codegen.context import log_msg, program_log
from ..pipeline import CompiledPipeline
from ..pre import ReplicationEngine
from ..tables import TableRuntime
from ..profiles import ActionProfileRuntime, ProfileMember
from ..valuesets import ValueSetRuntime
from .build import load_module
from .cprogram import CProgram, generate
from .state import NativeCounterArrayState, NativeMeterArrayState, NativeRegisterArrayState

log = logging.getLogger(__name__)

# engine.c's R_* enum, in order: the stats keys of engine.PacketEngine.
STAT_NAMES = (
    "rx_packets", "tx_packets", "resubmitted", "cloned", "recirculated",
    "drop:recirculation_limit", "drop:assert_failed", "drop:ingress_mark_to_drop", "drop:egress_mark_to_drop",
    "drop:unknown_multicast_group", "drop:empty_multicast_group", "drop:unknown_clone_session",
    "drop:error:ZeroDivisionError", "drop:error:ValueError", "drop:bad_ingress_port", "drop:error:StackOutOfBounds",
    "drop:log_msg_error",
)
# Drops worth a warning: the program hit something that Python would have raised.
_WARN_STATS = {"drop:assert_failed", "drop:error:ZeroDivisionError", "drop:error:ValueError",
               "drop:error:StackOutOfBounds", "drop:log_msg_error"}
_WARN_FIRST = 5
_WARN_EVERY = 1000

_U64 = (1 << 64) - 1
_SS_MEMBER, _SS_GROUP = 0xFFFFFFFE, 0xFFFFFFFD   # runtime.h: what a table entry of a profile's table holds
_callbacks_installed: set[int] = set()


def _install_callbacks(module: Any) -> None:
    if id(module) in _callbacks_installed:
        return

    @module.ffi.def_extern(name="ss_py_log_msg")
    def _log(ud, msg, values, n, signed_mask):  # noqa: ANN001 - cffi callback
        engine: NativeEngine = module.ffi.from_handle(ud)
        engine._log_msg(msg, values, n, signed_mask)

    _callbacks_installed.add(id(module))


class NativeEngine:
    """Runs frames through the compiled C pipeline; same results and stats as engine.PacketEngine."""

    def __init__(self, pipeline: CompiledPipeline, pre: ReplicationEngine, stats: Counter, cprog: CProgram,
                 module: Any, digests: list | None = None) -> None:
        self.cprog = cprog
        self.pre = pre
        self.stats = stats
        self.digests: list[tuple[str, tuple[int, ...]]] = digests if digests is not None else []
        self._learn_names = {list_id: learn[0] for list_id, learn in pipeline.learn_lists.items()}
        self.ffi, self.lib = module.ffi, module.lib
        _install_callbacks(module)
        self._handle = self.ffi.new_handle(self)
        raw = self.lib.ss_new(self._handle)
        if raw == self.ffi.NULL:
            raise MemoryError("native pipeline: cannot allocate its state")
        self.st = self.ffi.gc(raw, self.lib.ss_free)
        program = pipeline.program
        registers = {}
        for name, k in cprog.register_index.items():
            reg = program.registers[name]
            registers[name] = NativeRegisterArrayState(name, reg.size, reg.width,
                                                       self._u64_view(self.lib.ss_register_cells(self.st, k), reg.size))
        counters = {}
        for name, k in cprog.counter_index.items():
            size = program.counters[name].size
            counters[name] = NativeCounterArrayState(name, size,
                                                     self._u64_view(self.lib.ss_counter_cells(self.st, k, 0), size),
                                                     self._u64_view(self.lib.ss_counter_cells(self.st, k, 1), size))
        meters = {}
        for name, k in cprog.meter_index.items():
            size = pipeline.meters[name].size
            view = self.ffi.cast("uint8_t *", self.lib.ss_meter_cells(self.st, k, 0))
            configured = np.frombuffer(self.ffi.buffer(view, max(size, 1)), dtype=np.uint8)[:size]
            rates = np.frombuffer(self.ffi.buffer(self.ffi.cast("double *", self.lib.ss_meter_cells(self.st, k, 1)),
                                                  max(2 * size, 1) * 8), dtype=np.float64)[:2 * size]
            u64 = [self._u64_view(self.ffi.cast("uint64_t *", self.lib.ss_meter_cells(self.st, k, which)), 2 * size)
                   for which in (2, 3, 4)]
            meters[name] = NativeMeterArrayState(name, size, pipeline.meters[name].unit, configured, rates, *u64)
        # Direct meters count per entry slot: the tables (shared with the Python pipeline) now configure these.
        for rt in pipeline.tables.values():
            if rt.direct_meter is not None:
                rt.direct_meter = meters[rt.direct_meter.name]
        # The Device sees the native arrays; tables stay the Python ones (the control plane's truth).
        self.pipeline = dataclasses.replace(pipeline, registers=registers, counters=counters, meters=meters)
        self.tables: list[TableRuntime] = [pipeline.tables[name] for name in cprog.table_index]
        self._table_versions: list[int | None] = [None] * len(self.tables)
        self._table_snapshot: list[list] = [[] for _ in self.tables]
        self.profiles = [pipeline.profiles[name] for name in cprog.profile_index]
        self._profile_versions: list[int | None] = [None] * len(self.profiles)
        self.value_sets = [pipeline.value_sets[name] for name in cprog.value_set_index]
        self._value_set_versions: list[int | None] = [None] * len(self.value_sets)
        self._pre_version: int | None = None
        self._log_enabled: bool | None = None
        self._stats = self.ffi.cast("uint64_t *", self.lib.ss_stats(self.st))
        self._max_params = self.lib.ss_max_params()
        self._warned: Counter[str] = Counter()

    def _u64_view(self, pointer: Any, size: int) -> np.ndarray:
        return np.frombuffer(self.ffi.buffer(pointer, max(size, 1) * 8), dtype=np.uint64)[:size]

    # -- control-plane state into C ---------------------------------------------------------------------
    def sync(self) -> None:
        for t, rt in enumerate(self.tables):
            if rt.version != self._table_versions[t]:
                self._load_table(t, rt)
        for k, profile in enumerate(self.profiles):
            if profile.version != self._profile_versions[k]:
                self._load_profile(k, profile)
        for k, value_set in enumerate(self.value_sets):
            if value_set.version != self._value_set_versions[k]:
                self._load_value_set(k, value_set)
        if self.pre.version != self._pre_version:
            self._load_pre()
        enabled = program_log.isEnabledFor(logging.INFO)
        if enabled != self._log_enabled:
            self.lib.ss_set_log(self.st, int(enabled))
            self._log_enabled = enabled

    def _params(self, values: tuple[int, ...]) -> list[int]:
        return list(values) + [0] * (self._max_params - len(values))

    def _load_table(self, t: int, rt: TableRuntime) -> None:
        self.fold_direct_counters(t)
        ordered = rt.match_order()
        nkeys = len(rt.kinds)
        keys: list[int] = []
        masks: list[int] = []
        highs: list[int] = []
        is_range: list[int] = []
        actions: list[int] = []
        params: list[int] = []
        meters: list[int] = []
        for stored in ordered:
            for value, mask, high in zip(stored.values, stored.masks, stored.highs):
                keys.append(value & mask if high is None else value)
                masks.append(mask)
                highs.append(0 if high is None else high)
                is_range.append(0 if high is None else 1)
            runtime = stored.runtime
            if rt.profile is not None:   # a member or a group: its slot in the profile's native arrays
                target = runtime[0]
                actions.append(_SS_MEMBER if isinstance(target, ProfileMember) else _SS_GROUP)
                params.extend(self._params((target.slot,)))
            else:
                actions.append(rt.spec.action_map[runtime[2]].id)
                params.extend(self._params(runtime[1]))
            meters.append(0xFFFFFFFF if runtime[4] is None else runtime[4])
        n = len(ordered)
        ffi = self.ffi
        self.lib.ss_table_load(
            self.st, t, n,
            ffi.new("uint64_t[]", keys or [0]), ffi.new("uint64_t[]", masks or [0]),
            ffi.new("uint64_t[]", highs or [0]), ffi.new("uint8_t[]", is_range or [0]),
            ffi.new("uint32_t[]", actions or [0]), ffi.new("uint64_t[]", params or [0]),
            ffi.new("uint32_t[]", meters or [0]),
        )
        assert len(keys) == n * nkeys
        default = rt.default
        if default is None:
            self.lib.ss_table_set_default(self.st, t, 0, 0, ffi.new("uint64_t[]", self._params(())))
        else:
            action_id = rt.spec.action_map[default[2]].id
            self.lib.ss_table_set_default(self.st, t, 1, action_id, ffi.new("uint64_t[]", self._params(default[1])))
        self._table_snapshot[t] = [stored.runtime[3] for stored in ordered]
        self._table_versions[t] = rt.version

    def _load_profile(self, k: int, profile: ActionProfileRuntime) -> None:
        action_ids = self._profile_action_ids(profile)
        member_slots = max((m.slot for m in profile.members.values()), default=-1) + 1
        actions = [0] * member_slots
        params = [0] * (member_slots * self._max_params)
        for member in profile.members.values():
            actions[member.slot] = action_ids[member.action]
            params[member.slot * self._max_params:(member.slot + 1) * self._max_params] = self._params(member.params)
        group_slots = max((g.slot for g in profile.groups.values()), default=-1) + 1
        starts, counts, members = [0] * group_slots, [0] * group_slots, []
        for group in profile.groups.values():
            starts[group.slot], counts[group.slot] = len(members), len(group.picks)
            members.extend(member.slot for member in group.picks)
        ffi = self.ffi
        self.lib.ss_profile_load(self.st, k, member_slots, ffi.new("uint32_t[]", actions or [0]),
                                 ffi.new("uint64_t[]", params or [0]), group_slots,
                                 ffi.new("uint32_t[]", starts or [0]), ffi.new("uint32_t[]", counts or [0]),
                                 len(members), ffi.new("uint32_t[]", members or [0]))
        self._profile_versions[k] = profile.version

    def _profile_action_ids(self, profile: ActionProfileRuntime) -> dict[str, int]:
        """Action name -> the id members carry: that of the profile's first table (ccontrol._dispatch_ids)."""
        first = next(rt.spec for rt in self.tables if rt.name == profile.spec.tables[0])
        return {name: action.id for name, action in first.action_map.items()}

    def _load_value_set(self, k: int, value_set: ValueSetRuntime) -> None:
        def halves(values: list[int]) -> list[int]:
            return [part for v in values for part in (v & _U64, v >> 64)] or [0]

        others = [(v, m, ()) for v, m in value_set.masked] + list(value_set.ranged)
        nfields = len(value_set.widths)
        lo = [0] * (len(others) * nfields)
        hi = [(1 << w) - 1 for _ in others for w in value_set.widths]
        for i, (_, _, bounds) in enumerate(others):
            for shift, _, low, high in bounds:
                f = value_set.shifts.index(shift)
                lo[i * nfields + f], hi[i * nfields + f] = low, high
        ffi = self.ffi
        self.lib.ss_vset_load(
            self.st, k, nfields, ffi.new("uint32_t[]", list(value_set.shifts)),
            ffi.new("uint32_t[]", list(value_set.widths)),
            len(value_set.exact), ffi.new("uint64_t[]", halves(sorted(value_set.exact))),
            len(others), ffi.new("uint64_t[]", halves([v for v, _, _ in others])),
            ffi.new("uint64_t[]", halves([m for _, m, _ in others])),
            ffi.new("uint8_t[]", [1 if bounds else 0 for _, _, bounds in others] or [0]),
            ffi.new("uint64_t[]", lo or [0]), ffi.new("uint64_t[]", hi or [0]))
        self._value_set_versions[k] = value_set.version

    def _load_pre(self) -> None:
        groups = sorted(self.pre.groups.items())
        sessions = sorted(self.pre.sessions.items())
        ports = [p for _, reps in groups for p, _ in reps] + [p for _, s in sessions for p, _ in s.replicas]
        rids = [r for _, reps in groups for _, r in reps] + [r for _, s in sessions for _, r in s.replicas]
        ffi = self.ffi
        self.lib.ss_pre_load(
            self.st, len(groups), ffi.new("uint32_t[]", [g for g, _ in groups] or [0]),
            ffi.new("uint32_t[]", [len(r) for _, r in groups] or [0]),
            len(sessions), ffi.new("uint32_t[]", [s for s, _ in sessions] or [0]),
            ffi.new("uint32_t[]", [len(s.replicas) for _, s in sessions] or [0]),
            ffi.new("uint32_t[]", [s.packet_length_bytes for _, s in sessions] or [0]),
            ffi.new("uint16_t[]", ports or [0]), ffi.new("uint16_t[]", rids or [0]),
        )
        self._pre_version = self.pre.version

    def set_clock(self, frozen_us: int | None) -> None:
        self.lib.ss_set_clock(self.st, -1 if frozen_us is None else frozen_us)

    def fold_direct_counters(self, only: int | None = None) -> None:
        """Add what C counted per entry into the entries' Python [packets, bytes] cells, and zero it in C."""
        for t, cells in enumerate(self._table_snapshot):
            if (only is not None and t != only) or not cells or cells[0] is None:
                continue
            counts = self._u64_view(self.lib.ss_table_counters(self.st, t), 2 * len(cells))
            if not counts.any():
                continue
            for i, cell in enumerate(cells):
                packets, byte_count = int(counts[2 * i]), int(counts[2 * i + 1])
                if packets or byte_count:
                    cell[0] += packets
                    cell[1] += byte_count
            counts[:] = 0

    # -- packets -----------------------------------------------------------------------------------------
    def process(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        return self.process_batch([(port, frame)])

    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """Run frames received as (port, frame) in order; return every (port, frame) sent, in order."""
        if not frames:
            return []
        self.sync()
        ffi = self.ffi
        ports_in, frames_in = zip(*frames)
        data = b"".join(frames_in)
        lens = ffi.new("uint32_t[]", list(map(len, frames_in)))
        if not (0 <= min(ports_in) and max(ports_in) < 512):
            # 0xFFFF stands for any port outside 0..511 (C counts it as drop:bad_ingress_port).
            ports_in = [port if isinstance(port, int) and 0 <= port < 512 else 0xFFFF for port in ports_in]
        ports = ffi.new("uint16_t[]", ports_in)
        count = self.lib.ss_process(self.st, ffi.from_buffer(data), lens, ports, len(frames))
        out = self._outputs(count)
        self._fold_stats()
        if self.lib.ss_digest_words(self.st):
            self._take_digests()
        return out

    def process_arrays(self, data: np.ndarray, lens: np.ndarray, ports: np.ndarray, count: int, emit) -> None:
        """Run `count` frames given as arrays (Device.process_arrays) and call `emit(NativeOutputs)` if any
        frame came out; the outputs stay in the C state's buffers, which the next call reuses."""
        if not count:
            return
        self.sync()
        ffi = self.ffi
        out = self.lib.ss_process(self.st, ffi.from_buffer("uint8_t[]", data), ffi.from_buffer("uint32_t[]", lens),
                                  ffi.from_buffer("uint16_t[]", ports), count)
        try:
            if out:
                emit(NativeOutputs(self, out))
        finally:
            self._fold_stats()
            # Digests the frames sent go to Device._digests like process_batch's (the Device delivers them).
            if self.lib.ss_digest_words(self.st):
                self._take_digests()

    def _take_digests(self) -> None:
        words = self.ffi.unpack(self.lib.ss_digest_data(self.st), self.lib.ss_digest_words(self.st))
        self.lib.ss_digest_clear(self.st)
        at = 0
        while at < len(words):
            list_id, n = words[at], words[at + 1]
            self.digests.append((self._learn_names[list_id], tuple(words[at + 2:at + 2 + n])))
            at += 2 + n

    def _outputs(self, count: int) -> list[tuple[int, bytes]]:
        if not count:
            return []
        ffi, lib = self.ffi, self.lib
        out_lens = ffi.unpack(lib.ss_out_lens(self.st), count)
        out_ports = ffi.unpack(lib.ss_out_ports(self.st), count)
        blob = ffi.buffer(lib.ss_out_data(self.st), sum(out_lens))[:]
        ends = list(itertools.accumulate(out_lens))
        return list(zip(out_ports, map(blob.__getitem__, map(slice, [0] + ends[:-1], ends))))

    def _fold_stats(self) -> None:
        stats, raw = self.stats, self._stats
        deltas = self.ffi.unpack(raw, len(STAT_NAMES))
        if not any(deltas):
            return
        for i, (name, delta) in enumerate(zip(STAT_NAMES, deltas)):
            if delta:
                stats[name] += delta
                raw[i] = 0
                if name in _WARN_STATS:
                    total = stats[name]
                    if total - delta < _WARN_FIRST or total // _WARN_EVERY != (total - delta) // _WARN_EVERY:
                        log.warning("packet dropped (%s, %d so far)", name[len("drop:"):], total)

    def _log_msg(self, msg: int, values: Any, n: int, signed_mask: int) -> None:
        ints = []
        for i in range(n):
            value = values[2 * i] | (values[2 * i + 1] << 64)
            if signed_mask >> i & 1 and value >= 1 << 127:
                value -= 1 << 128
            ints.append(value)
        log_msg(self.cprog.log_formats[msg], ints)


class NativeOutputs:
    """The frames one ss_process call emitted, where C keeps them: `count` frames back to back at `data_address`,
    uint32 lengths at `lens_address`, uint16 output ports at `ports_address`. For another C module to read during
    the call that received them (omnireduce.shm's scatter into rings); `frames(indexes)` copies some out."""

    __slots__ = ("engine", "count", "data_address", "lens_address", "ports_address")

    def __init__(self, engine: NativeEngine, count: int) -> None:
        ffi, lib, st = engine.ffi, engine.lib, engine.st
        self.engine = engine
        self.count = count
        self.data_address = int(ffi.cast("uintptr_t", lib.ss_out_data(st)))
        self.lens_address = int(ffi.cast("uintptr_t", lib.ss_out_lens(st)))
        self.ports_address = int(ffi.cast("uintptr_t", lib.ss_out_ports(st)))

    def frames(self, indexes: list[int]) -> list[tuple[int, bytes]]:
        """(port, frame) of the outputs at `indexes`, in that order."""
        every = self.engine._outputs(self.count)
        return [every[i] for i in indexes]


def build_native_engine(pipeline: CompiledPipeline, pre: ReplicationEngine, stats: Counter,
                        digests: list | None = None) -> NativeEngine:
    """Generate, compile (or find cached) and start the native pipeline for `pipeline`'s program.

    Raises NativeUnsupported (a construct the C emitter does not lower) or NativeBuildError (no compiler or
    cffi, or the compile failed)."""
    cprog = generate(pipeline.program, pipeline.layout)
    for warning in cprog.warnings:
        log.debug("native: %s", warning)
    module = load_module(cprog.source, cprog.digest)
    return NativeEngine(pipeline, pre, stats, cprog, module, digests)
