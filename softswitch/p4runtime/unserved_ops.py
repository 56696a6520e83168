"""Reads of the P4Runtime entity kinds the softswitch does not implement: externs.

The softswitch refuses programs that use them, so a program it runs has none of them. A wildcard read of such a
kind must then answer what is certainly true, that there are none (generic clients such as finsy's `delete_all()`
read every kind); a read naming an object the P4Info does not define is INVALID_ARGUMENT, as for tables. Only a
P4Info that does define such objects (which the JSON cannot implement) gets UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError
from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap


@dataclass(frozen=True, slots=True)
class UnservedKind:
    """One entity kind: what it is called, the objects of the P4Info it reads, and the query's id of one."""

    what: str                      # "extern", as errors name it
    objects: Sequence[int]         # ids of the P4Info's objects of this kind
    requested_id: int              # 0: all of them


class UnservedOps:
    """Reads of the unimplemented entity kinds under one P4Info."""

    def __init__(self, p4map: P4InfoMap) -> None:
        self.p4map = p4map
        p4info = p4map.p4info
        self._externs = tuple((extern.extern_type_id, instance.preamble.id)
                              for extern in p4info.externs for instance in extern.instances)

    def kind_of(self, entity: p4runtime_pb2.Entity) -> UnservedKind | None:
        """The query of `entity`, when it is of an unserved kind."""
        kind = entity.WhichOneof("entity")
        if kind == "extern_entry":
            query = entity.extern_entry
            type_ids = {type_id for type_id, _ in self._externs}
            if query.extern_type_id and query.extern_type_id not in type_ids:
                raise P4RuntimeError.invalid_argument(
                    f"no extern type with id {query.extern_type_id} (0x{query.extern_type_id:08x}) in the P4Info")
            instances = [instance for type_id, instance in self._externs
                         if not query.extern_type_id or type_id == query.extern_type_id]
            return UnservedKind("extern", instances, query.extern_id)
        return None

    def read(self, kind: UnservedKind) -> Iterator[p4runtime_pb2.Entity]:
        if kind.requested_id and kind.requested_id not in kind.objects:
            raise P4RuntimeError.invalid_argument(
                f"no {kind.what} with id {kind.requested_id} (0x{kind.requested_id:08x}) in the P4Info")
        if kind.objects:
            raise P4RuntimeError.unimplemented(f"{kind.what}s are not supported by the softswitch")
        return iter(())
