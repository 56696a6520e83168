"""The softswitch Device: a v1model target running the BMv2 JSON that p4c-bm2-ss compiles.

This is the API the P4Runtime server (softswitch/p4runtime/), the port loop and the tests use
(see docs/softswitch.md). Every method takes the one device lock, so gRPC threads can manage tables
while the packet thread runs packets; all names are BMv2 JSON names.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import check_backend, default_backend, start_pipeline
from .entries import (
    DigestInfo,
    DigestSample,
    FieldMatch,
    MeterInfo,
    ProfileGroupInfo,
    ProfileInfo,
    ProfileMemberInfo,
    TableEntry,
    TableInfo,
    ValueSetInfo,
)
from .errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from .meters import MeterConfig
from .pipeline import CompiledPipeline, compile_program
from .pre import CloneSession, ReplicationEngine
from .tables import TableRuntime

log = logging.getLogger(__name__)

# Digests kept for take_digests() while no listener takes them; past that the oldest go (counted in stats).
DIGEST_BUFFER = 65536


class Device:
    def __init__(self, name: str = "softswitch", backend: str | None = None) -> None:
        """`backend`: "auto" (native where possible), "native" or "python"; None: $OMNIREDUCE_SOFTSWITCH_BACKEND
        or auto (see backend.py)."""
        self.name = name
        self.requested_backend = check_backend(backend) if backend is not None else default_backend()
        self.backend: str | None = None  # what runs the loaded pipeline: "native" | "python"
        self._lock = threading.RLock()
        self._pipeline: CompiledPipeline | None = None
        self._pipeline_json: bytes | None = None
        self._engine = None
        self.pre = ReplicationEngine()
        self.stats: Counter[str] = Counter()
        # Digests the engine sent and nobody took yet; a listener (set_digest_listener) takes them after every call.
        self._digests: list[tuple[str, tuple[int, ...]]] = []
        self._digest_listener: Callable[[list[DigestSample]], None] | None = None

    # -- pipeline -----------------------------------------------------------------------------------------
    def load_pipeline(self, bmv2_json: bytes | str | dict) -> None:
        """Validate and compile `bmv2_json`, then replace the pipeline and clear all state."""
        if isinstance(bmv2_json, dict):
            raw = json.dumps(bmv2_json).encode()
        elif isinstance(bmv2_json, str):
            raw = bmv2_json.encode()
        elif isinstance(bmv2_json, (bytes, bytearray, memoryview)):
            raw = bytes(bmv2_json)
        else:
            raise InvalidArgument(f"pipeline config must be JSON bytes/str/dict, not {type(bmv2_json).__name__}")
        try:
            compiled = compile_program(bmv2_json if isinstance(bmv2_json, dict) else raw)
        except RecursionError:
            raise InvalidArgument("the pipeline JSON is nested too deeply to load (past Python's recursion "
                                  "limit)") from None
        except SyntaxError as error:
            # An expression nested past what Python's parser takes once generated as source (about 200
            # parentheses); any other SyntaxError is a code generation bug and stays one.
            if "nested" not in str(error.msg):
                raise
            raise InvalidArgument(f"the pipeline JSON is nested too deeply to load: {error.msg} in the code "
                                  f"generated for {error.filename}") from None
        with self._lock:
            self._digests.clear()
            running = start_pipeline(compiled, self.pre, self.stats, self.requested_backend, self.name, self._digests)
            self._pipeline = running.pipeline
            self._pipeline_json = raw
            self.pre.clear()
            self.stats.clear()
            self._engine = running.engine
            self.backend = running.backend
        log.info("%s: pipeline loaded (%d tables, %d registers, %s backend)", self.name, len(compiled.tables),
                 len(compiled.registers), running.backend)

    @property
    def pipeline_loaded(self) -> bool:
        return self._pipeline is not None

    @property
    def pipeline_json(self) -> bytes | None:
        return self._pipeline_json

    def _p(self) -> CompiledPipeline:
        if self._pipeline is None:
            raise FailedPrecondition("no pipeline loaded")
        return self._pipeline

    def _table(self, name: str) -> TableRuntime:
        rt = self._p().tables.get(name)
        if rt is None:
            raise NotFound(f"no table named '{name}'{_suggest(name, self._p().tables)}")
        return rt

    # -- tables -------------------------------------------------------------------------------------------
    def table_names(self) -> list[str]:
        with self._lock:
            return list(self._p().tables)

    def table_info(self, name: str) -> TableInfo:
        with self._lock:
            return self._table(name).info

    def action_param_bitwidths(self, action: str) -> tuple[int, ...]:
        with self._lock:
            found = self._p().program.actions.get(action)
            if found is None:
                raise NotFound(f"no action named '{action}'{_suggest(action, self._p().program.actions)}")
            return tuple(p.width for p in found.params)

    def table_insert(self, entry: TableEntry) -> None:
        with self._lock:
            rt = self._table(entry.table)
            rt.insert(entry, [0, 0] if rt.info.has_direct_counter else None)

    def table_modify(self, entry: TableEntry) -> None:
        with self._lock:
            self._table(entry.table).modify(entry)

    def table_delete(self, entry: TableEntry) -> None:
        with self._lock:
            self._table(entry.table).delete(entry)

    def table_entries(self, table: str) -> list[TableEntry]:
        with self._lock:
            return self._table(table).entries()

    def table_clear(self, table: str) -> None:
        """Delete every non-const entry of `table` (keeps the default)."""
        with self._lock:
            rt = self._table(table)
            if rt.immutable:
                raise PermissionDenied(f"table '{table}' has const entries; it cannot be written")
            rt.clear()

    def table_set_default(self, table: str, action: str, params: tuple[int, ...] | list[int]) -> None:
        with self._lock:
            rt = self._table(table)
            if rt.profile is not None:
                raise InvalidArgument(f"table '{table}' uses action profile '{rt.profile.name}': it has no default "
                                      "action (BMv2 runs nothing on a miss; p4c drops its default_action)")
            de = rt.spec.default_entry
            if de is not None and de.entry_const and (action != de.action or tuple(params) != de.params):
                raise PermissionDenied(f"table '{table}' has a const default action")
            if de is not None and de.action_const and action != de.action:
                raise PermissionDenied(f"table '{table}' has a const default action ({de.action})")
            rt.set_default(rt.make_runtime(action, tuple(params), None), TableEntry(table, (), action, tuple(params), 0, True))

    def table_reset_default(self, table: str) -> None:
        with self._lock:
            rt = self._table(table)
            de = rt.spec.default_entry
            rt.set_default(rt.make_runtime(de.action, de.params, None) if de is not None else None, None)

    def table_get_default(self, table: str) -> TableEntry:
        with self._lock:
            rt = self._table(table)
            if rt.default_entry is not None:
                return rt.default_entry
            if rt.default is None:
                raise NotFound(f"table '{table}' has no default action")
            return TableEntry(table, (), rt.default[2], rt.default[1], 0, True)

    # -- direct counters ----------------------------------------------------------------------------------
    def _counter_cell(self, table: str, entry_key: tuple[FieldMatch, ...], priority: int) -> list:
        rt = self._table(table)
        self._engine.fold_direct_counters()
        if not rt.info.has_direct_counter:
            raise InvalidArgument(f"table '{table}' has no direct counter")
        return rt.find(tuple(entry_key), priority).runtime[3]

    def direct_counter_read(self, table: str, entry_key: tuple[FieldMatch, ...], priority: int = 0) -> tuple[int, int]:
        with self._lock:
            cell = self._counter_cell(table, entry_key, priority)
            return cell[0], cell[1]

    def direct_counter_write(
        self, table: str, entry_key: tuple[FieldMatch, ...], priority: int, packets: int, byte_count: int
    ) -> None:
        with self._lock:
            if packets < 0 or byte_count < 0:
                raise InvalidArgument("counter values must be >= 0")
            cell = self._counter_cell(table, entry_key, priority)
            cell[0], cell[1] = packets, byte_count

    def direct_counter_of(self, counter: str) -> str:
        """The table a direct counter (by JSON name) is bound to."""
        with self._lock:
            table = self._p().direct_counters.get(counter)
            if table is None:
                raise NotFound(f"no direct counter named '{counter}'")
            return table

    # -- indirect counters --------------------------------------------------------------------------------
    def counter_names(self) -> list[str]:
        with self._lock:
            return list(self._p().counters)

    def _counter(self, name: str):
        counters = self._p().counters
        if name not in counters:
            raise NotFound(f"no counter named '{name}'{_suggest(name, counters)}")
        return counters[name]

    def counter_size(self, name: str) -> int:
        with self._lock:
            return self._counter(name).size

    def counter_read(self, name: str, index: int) -> tuple[int, int]:
        with self._lock:
            return self._counter(name).read(index)

    def counter_write(self, name: str, index: int, packets: int, byte_count: int) -> None:
        with self._lock:
            self._counter(name).write(index, packets, byte_count)

    # -- registers ----------------------------------------------------------------------------------------
    def register_names(self) -> list[str]:
        with self._lock:
            return list(self._p().registers)

    def _register(self, name: str):
        registers = self._p().registers
        if name not in registers:
            raise NotFound(f"no register named '{name}'{_suggest(name, registers)}")
        return registers[name]

    def register_size(self, name: str) -> int:
        with self._lock:
            return self._register(name).size

    def register_bitwidth(self, name: str) -> int:
        with self._lock:
            return self._register(name).width

    def register_read(self, name: str, index: int) -> int:
        with self._lock:
            return self._register(name).read(index)

    def register_write(self, name: str, index: int, value: int) -> None:
        with self._lock:
            self._register(name).write(index, value)

    def register_read_all(self, name: str) -> np.ndarray:
        with self._lock:
            return self._register(name).read_all()

    def register_reset(self, name: str) -> None:
        with self._lock:
            self._register(name).reset()

    # -- action profiles and selectors ----------------------------------------------------------------------
    def action_profile_names(self) -> list[str]:
        with self._lock:
            return list(self._p().profiles)

    def _profile(self, name: str):
        profiles = self._p().profiles
        if name not in profiles:
            raise NotFound(f"no action profile named '{name}'{_suggest(name, profiles)}")
        return profiles[name]

    def action_profile_info(self, name: str) -> ProfileInfo:
        with self._lock:
            return self._profile(name).info

    def profile_member_insert(self, profile: str, member_id: int, action: str, params: tuple[int, ...]) -> None:
        with self._lock:
            self._profile(profile).member_insert(member_id, action, tuple(params))

    def profile_member_modify(self, profile: str, member_id: int, action: str, params: tuple[int, ...]) -> None:
        """Change a member's action: every table entry and group that holds it runs the new one."""
        with self._lock:
            self._profile(profile).member_modify(member_id, action, tuple(params))

    def profile_member_delete(self, profile: str, member_id: int) -> None:
        """FailedPrecondition while a group or a table entry holds the member."""
        with self._lock:
            self._profile(profile).member_delete(member_id)

    def profile_members(self, profile: str) -> list[ProfileMemberInfo]:
        with self._lock:
            return self._profile(profile).member_list()

    def profile_group_insert(self, profile: str, group_id: int, members: list[tuple[int, int]],
                             max_size: int = 0) -> None:
        """A group of (member id, weight) of an action selector; `max_size` (0: none) bounds the weights' sum."""
        with self._lock:
            self._profile(profile).group_insert(group_id, members, max_size)

    def profile_group_modify(self, profile: str, group_id: int, members: list[tuple[int, int]],
                             max_size: int = 0) -> None:
        with self._lock:
            self._profile(profile).group_modify(group_id, members, max_size)

    def profile_group_delete(self, profile: str, group_id: int) -> None:
        """FailedPrecondition while a table entry points at the group."""
        with self._lock:
            self._profile(profile).group_delete(group_id)

    def profile_groups(self, profile: str) -> list[ProfileGroupInfo]:
        with self._lock:
            return self._profile(profile).group_list()

    # -- meters -------------------------------------------------------------------------------------------
    def meter_names(self) -> list[str]:
        """Indirect and direct meters, by JSON name."""
        with self._lock:
            return list(self._p().program.meters)

    def _meter_spec(self, name: str):
        meters = self._p().program.meters
        if name not in meters:
            raise NotFound(f"no meter named '{name}'{_suggest(name, meters)}")
        return meters[name]

    def meter_info(self, name: str) -> MeterInfo:
        with self._lock:
            spec = self._meter_spec(name)
            return MeterInfo(spec.name, spec.size if not spec.is_direct else 0, spec.unit,
                             spec.binding if spec.is_direct else None)

    def _indirect_meter(self, name: str):
        spec = self._meter_spec(name)
        if spec.is_direct:
            raise InvalidArgument(f"meter '{name}' is a direct meter of table '{spec.binding}': address its cells "
                                  "by table entry")
        return self._p().meters[name]

    def meter_set(self, name: str, index: int, config: MeterConfig | None) -> None:
        """Configure one cell of an indirect meter; None: the default (every packet GREEN)."""
        with self._lock:
            self._indirect_meter(name).set(index, config)

    def meter_get(self, name: str, index: int) -> MeterConfig | None:
        with self._lock:
            return self._indirect_meter(name).get(index)

    def _direct_meter_cell(self, table: str, entry_key: tuple[FieldMatch, ...], priority: int):
        rt = self._table(table)
        if rt.direct_meter is None:
            raise InvalidArgument(f"table '{table}' has no direct meter")
        return rt.direct_meter, rt.find(tuple(entry_key), priority).runtime[4]

    def direct_meter_set(self, table: str, entry_key: tuple[FieldMatch, ...], priority: int,
                         config: MeterConfig | None) -> None:
        """Configure the direct meter cell of a table entry; None: the default (every packet GREEN)."""
        with self._lock:
            meter, slot = self._direct_meter_cell(table, entry_key, priority)
            meter.set(slot, config)

    def direct_meter_get(self, table: str, entry_key: tuple[FieldMatch, ...], priority: int = 0) -> MeterConfig | None:
        with self._lock:
            meter, slot = self._direct_meter_cell(table, entry_key, priority)
            return meter.get(slot)

    def direct_meter_of(self, meter: str) -> str:
        """The table a direct meter (by JSON name) is bound to."""
        with self._lock:
            spec = self._meter_spec(meter)
            if not spec.is_direct or spec.binding is None:
                raise NotFound(f"no direct meter named '{meter}'")
            return spec.binding

    def freeze_clock(self, microseconds: int | None) -> None:
        """Stop the target's clock (what meters and the global timestamps read) at `microseconds` after the pipeline
        load, for reproducible tests; None lets it run again. Loading a pipeline starts a running clock."""
        with self._lock:
            if microseconds is not None and (not isinstance(microseconds, int) or microseconds < 0):
                raise InvalidArgument(f"clock value {microseconds!r} must be an int >= 0")
            self._p()
            self._engine.set_clock(microseconds)

    # -- parser value sets --------------------------------------------------------------------------------
    def value_set_names(self) -> list[str]:
        with self._lock:
            return list(self._p().value_sets)

    def _value_set(self, name: str):
        value_sets = self._p().value_sets
        if name not in value_sets:
            raise NotFound(f"no value set named '{name}'{_suggest(name, value_sets)}")
        return value_sets[name]

    def value_set_info(self, name: str) -> ValueSetInfo:
        with self._lock:
            return self._value_set(name).info

    def value_set_write(self, name: str, members: list[tuple[FieldMatch, ...]]) -> None:
        """Replace the members of a value set: one FieldMatch per key field each (exact, ternary, lpm, range or
        optional); ResourceExhausted past its size, AlreadyExists for a repeated member."""
        with self._lock:
            self._value_set(name).write(members)

    def value_set_read(self, name: str) -> list[tuple[FieldMatch, ...]]:
        with self._lock:
            return self._value_set(name).read()

    # -- packet replication engine ------------------------------------------------------------------------
    def mc_group_insert(self, group_id: int, replicas: list[tuple[int, int]]) -> None:
        with self._lock:
            self.pre.group_insert(group_id, replicas)

    def mc_group_modify(self, group_id: int, replicas: list[tuple[int, int]]) -> None:
        with self._lock:
            self.pre.group_modify(group_id, replicas)

    def mc_group_delete(self, group_id: int) -> None:
        with self._lock:
            self.pre.group_delete(group_id)

    def mc_group_read(self, group_id: int | None = None) -> dict[int, list[tuple[int, int]]]:
        with self._lock:
            return self.pre.group_read(group_id)

    def clone_session_insert(self, session_id: int, replicas: list[tuple[int, int]], packet_length_bytes: int = 0) -> None:
        with self._lock:
            self.pre.session_insert(session_id, replicas, packet_length_bytes)

    def clone_session_modify(self, session_id: int, replicas: list[tuple[int, int]], packet_length_bytes: int = 0) -> None:
        with self._lock:
            self.pre.session_modify(session_id, replicas, packet_length_bytes)

    def clone_session_delete(self, session_id: int) -> None:
        with self._lock:
            self.pre.session_delete(session_id)

    def clone_session_read(self, session_id: int | None = None) -> dict[int, CloneSession]:
        with self._lock:
            return self.pre.session_read(session_id)

    # -- packets ------------------------------------------------------------------------------------------
    def process_packet(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """Run one frame received on `port` through the pipeline; return the (port, frame) pairs sent out."""
        with self._lock:
            engine = self._engine
            if engine is None:
                self.stats["drop:no_pipeline"] += 1
                return []
            if not isinstance(port, int) or not 0 <= port < 512:
                self.stats["drop:bad_ingress_port"] += 1
                return []
            out = engine.process(port, bytes(frame))
            if self._digests:
                self._deliver_digests()
            return out

    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """Run frames received as (port, frame), in order; return every (port, frame) sent, in order. The
        native pipeline takes the whole batch in one call, which is what makes it fast."""
        with self._lock:
            engine = self._engine
            if engine is None:
                self.stats["drop:no_pipeline"] += len(frames)
                return []
            # Frames go through as given: both engines take any bytes-like frame and return bytes.
            out = engine.process_batch(frames)
            if self._digests:
                self._deliver_digests()
            return out

    # -- digests ------------------------------------------------------------------------------------------
    def digest_names(self) -> list[str]:
        """The program's digests (learn lists), by name: for digest<T>, p4c names them after T."""
        with self._lock:
            return [learn.name for learn in self._p().program.learn_lists.values()]

    def digest_info(self, name: str) -> DigestInfo:
        with self._lock:
            program = self._p().program
            for learn in program.learn_lists.values():
                if learn.name == name:
                    return DigestInfo(name, tuple(program.field_spec(h, f).width for h, f in learn.fields))
            raise NotFound(f"no digest named '{name}'"
                           f"{_suggest(name, [l.name for l in program.learn_lists.values()])}")

    def set_digest_listener(self, listener: Callable[[list[DigestSample]], None] | None) -> None:
        """Have `listener` called with the digests of each process_packet/process_batch call, in order, while the
        device lock is held (it should only queue them); None: keep them for take_digests()."""
        with self._lock:
            self._digest_listener = listener
            if listener is not None and self._digests:
                self._deliver_digests()

    def take_digests(self) -> list[DigestSample]:
        """The digests sent since the last call, in order (while no listener is set)."""
        with self._lock:
            samples = [DigestSample(name, values) for name, values in self._digests]
            self._digests.clear()
            return samples

    def _deliver_digests(self) -> None:
        listener = self._digest_listener
        if listener is None:
            excess = len(self._digests) - DIGEST_BUFFER
            if excess > 0:
                del self._digests[:excess]
                self.stats["digest_dropped"] += excess
            return
        samples = [DigestSample(name, values) for name, values in self._digests]
        self._digests.clear()
        try:
            listener(samples)
        except Exception:  # noqa: BLE001 - a listener's bug must not stop the packets
            log.exception("%s: the digest listener failed", self.name)

    def process_arrays(self, data, lens, ports, count: int, emit) -> bool:
        """Run `count` frames given as arrays (back to back in `data` uint8, lengths `lens` uint32, ingress ports
        `ports` uint16) without making Python objects of them, and hand the outputs to `emit(outputs)` while the
        device's lock is held (native.backend.NativeOutputs: addresses of the output buffers, valid only during
        the call). False if the running pipeline cannot take arrays (the Python one): nothing was done, the
        caller passes the frames to process_batch instead."""
        with self._lock:
            engine = self._engine
            if engine is None:
                self.stats["drop:no_pipeline"] += count
                return True
            run = getattr(engine, "process_arrays", None)
            if run is None:
                return False
            try:
                run(data, lens, ports, count, emit)
            finally:
                # The digests these frames sent, as process_batch delivers them (to the listener, or kept).
                if self._digests:
                    self._deliver_digests()
            return True

    def generated_sources(self) -> dict[str, str]:
        """The source generated for the loaded pipeline, by part (for debugging): the Python always (it is the
        reference and the fallback), and `<native>`, the C, when the native pipeline runs."""
        with self._lock:
            sources = dict(self._p().namespace.sources)
            cprog = getattr(self._engine, "cprog", None)
            if cprog is not None:
                sources["<native>"] = cprog.source
            return sources

    def stats_snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.stats)


def _suggest(name: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f". Did you mean '{close[0]}'?" if close else ""
