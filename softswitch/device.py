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
from typing import Any

import numpy as np

from .backend import check_backend, default_backend, start_pipeline
from .entries import FieldMatch, TableEntry, TableInfo
from .errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from .pipeline import CompiledPipeline, compile_program
from .pre import CloneSession, ReplicationEngine
from .tables import TableRuntime

log = logging.getLogger(__name__)


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
            running = start_pipeline(compiled, self.pre, self.stats, self.requested_backend, self.name)
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
            return engine.process(port, bytes(frame))

    def process_batch(self, frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """Run frames received as (port, frame), in order; return every (port, frame) sent, in order. The
        native pipeline takes the whole batch in one call, which is what makes it fast."""
        with self._lock:
            engine = self._engine
            if engine is None:
                self.stats["drop:no_pipeline"] += len(frames)
                return []
            # Frames go through as given: both engines take any bytes-like frame and return bytes.
            return engine.process_batch(frames)

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
            run(data, lens, ports, count, emit)
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
