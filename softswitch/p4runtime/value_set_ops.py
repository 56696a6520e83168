"""P4Runtime ValueSetEntry writes and reads (parser value sets) on the softswitch Device.

Per the spec ("ValueSetEntry"): only MODIFY, which replaces every member (INSERT and DELETE are INVALID_ARGUMENT);
each member gives one FieldMatch per match field of the value set in P4Info, under the same rules as a table
entry's match (don't-care fields omitted, values within their width), without priority; more members than the
P4Info size is RESOURCE_EXHAUSTED, a repeated member ALREADY_EXISTS. A read of value_set_id 0 reads every value set;
a read must not carry members.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.entries import FieldMatch
from omnireduce.softswitch.p4runtime.entry_codec import decode_field, encode_match, wildcard
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError, device_errors
from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap, ValueSetInfo

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device

Update = p4runtime_pb2.Update


def decode_member(value_set: ValueSetInfo, index: int, member: p4runtime_pb2.ValueSetMember) -> tuple[FieldMatch, ...]:
    given: dict[int, p4runtime_pb2.FieldMatch] = {}
    for fm in member.match:
        field = value_set.fields_by_id.get(fm.field_id)
        if field is None:
            raise P4RuntimeError.invalid_argument(
                f"value set '{value_set.name}' member {index}: no match field with id {fm.field_id}")
        if fm.field_id in given:
            raise P4RuntimeError.invalid_argument(
                f"value set '{value_set.name}' member {index}: field '{field.name}' is given twice")
        given[fm.field_id] = fm
    key = []
    for field in value_set.match_fields:
        fm = given.get(field.id)
        if fm is not None:
            key.append(decode_field(value_set, field, fm))   # type: ignore[arg-type]  (only .name is used)
        elif field.kind == "exact":
            raise P4RuntimeError.invalid_argument(
                f"value set '{value_set.name}' member {index}: exact match field '{field.name}' is missing")
        else:
            key.append(wildcard(field))
    return tuple(key)


class ValueSetOps:
    """Parser value sets of one Device under one P4Info."""

    def __init__(self, device: Device, p4map: P4InfoMap) -> None:
        self.device = device
        self.p4map = p4map

    def write(self, update_type: int, msg: p4runtime_pb2.ValueSetEntry) -> None:
        if update_type != Update.MODIFY:
            raise P4RuntimeError.invalid_argument(
                "value set entries can only be MODIFYed (which replaces every member; an empty list empties the set)")
        if msg.value_set_id == 0:
            raise P4RuntimeError.invalid_argument("value_set_id 0 is only a wildcard for reads")
        value_set = self.p4map.value_sets.get(msg.value_set_id)
        members = [decode_member(value_set, i, member) for i, member in enumerate(msg.members)]
        with device_errors():   # the Device refuses more members than the size (the P4Info's, checked at push)
            self.device.value_set_write(value_set.name, members)

    def read(self, query: p4runtime_pb2.ValueSetEntry) -> Iterator[p4runtime_pb2.Entity]:
        if query.members:
            raise P4RuntimeError.invalid_argument("a value set read must not give members")
        value_sets = (list(self.p4map.value_sets) if query.value_set_id == 0
                      else [self.p4map.value_sets.get(query.value_set_id)])
        for value_set in value_sets:
            with device_errors():
                members = self.device.value_set_read(value_set.name)
            entity = p4runtime_pb2.Entity()
            entity.value_set_entry.value_set_id = value_set.id
            for member in members:
                entity.value_set_entry.members.add().match.extend(encode_match(value_set, member))   # type: ignore[arg-type]
            yield entity
