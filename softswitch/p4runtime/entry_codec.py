"""Translation of P4Runtime table entries <-> softswitch `entries.TableEntry`, with every P4Runtime rule.

Requests are validated here against the P4Info (spec "TableEntry", "Match Format", "Action
Specification", "Default Entry"): bytestrings must fit their field, LPM values must have no bits past
the prefix, ternary values no bits outside the mask, "don't care" fields must be omitted (not sent as a
zero mask / zero prefix / full range), exact fields must be present, priorities must be set exactly
when the table has ternary/range/optional fields, and the action must be one the table may use in
that position. Entries read from the Device come back in canonical form: don't-care fields omitted,
shortest bytestrings, which gives P4Runtime's read-write symmetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import grpc

from omnireduce.p4proto import p4info_pb2, p4runtime_pb2
from omnireduce.softswitch.entries import FieldMatch, TableEntry
from omnireduce.softswitch.p4runtime.bytestrings import all_ones, decode_uint, encode_uint
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError
from omnireduce.softswitch.p4runtime.p4info_map import ActionInfo, MatchFieldInfo, P4InfoMap, TableInfo

# Which FieldMatch oneof each P4Info match kind must use.
_ONEOF_OF_KIND = {"exact": "exact", "lpm": "lpm", "ternary": "ternary", "range": "range", "optional": "optional"}


def wildcard(field: MatchFieldInfo) -> FieldMatch:
    """The softswitch representation of an omitted ("don't care") field of a wildcard kind."""
    if field.kind == "lpm":
        return FieldMatch("lpm", 0, prefix_len=0)
    if field.kind == "range":
        return FieldMatch("range", 0, high=all_ones(field.bitwidth))
    # ternary and optional: a zero mask matches everything.
    return FieldMatch(field.kind, 0, mask=0)


def is_wildcard(field: MatchFieldInfo, match: FieldMatch) -> bool:
    if field.kind == "lpm":
        return not match.prefix_len
    if field.kind == "range":
        return match.value == 0 and match.high == all_ones(field.bitwidth)
    if field.kind in ("ternary", "optional"):
        return match.mask == 0
    return False


def _decode_field(table: TableInfo, field: MatchFieldInfo, fm: p4runtime_pb2.FieldMatch) -> FieldMatch:
    what = f"table '{table.name}' field '{field.name}'"
    oneof = fm.WhichOneof("field_match_type")
    if oneof != _ONEOF_OF_KIND[field.kind]:
        raise P4RuntimeError.invalid_argument(f"{what} is a {field.kind} match but the request gives {oneof}")
    width = field.bitwidth
    if field.kind == "exact":
        return FieldMatch("exact", decode_uint(fm.exact.value, width, what))
    if field.kind == "lpm":
        value = decode_uint(fm.lpm.value, width, what)
        prefix_len = fm.lpm.prefix_len
        if prefix_len == 0:
            raise P4RuntimeError.invalid_argument(
                f"{what}: prefix_len 0 is a don't-care match; omit the field instead")
        if not 0 < prefix_len <= width:
            raise P4RuntimeError.invalid_argument(f"{what}: prefix_len {prefix_len} is outside 1..{width}")
        if value & all_ones(width - prefix_len):
            raise P4RuntimeError.invalid_argument(
                f"{what}: value 0x{value:x} has bits set past the /{prefix_len} prefix")
        return FieldMatch("lpm", value, prefix_len=prefix_len)
    if field.kind == "ternary":
        value = decode_uint(fm.ternary.value, width, what)
        mask = decode_uint(fm.ternary.mask, width, what + " mask")
        if mask == 0:
            raise P4RuntimeError.invalid_argument(f"{what}: a zero mask is a don't-care match; omit the field instead")
        if value & ~mask:
            raise P4RuntimeError.invalid_argument(
                f"{what}: value 0x{value:x} has bits outside mask 0x{mask:x} (value & ~mask must be 0)")
        return FieldMatch("ternary", value, mask=mask)
    if field.kind == "range":
        low = decode_uint(fm.range.low, width, what + " low")
        high = decode_uint(fm.range.high, width, what + " high")
        if low > high:
            raise P4RuntimeError.invalid_argument(f"{what}: range low {low} is above high {high}")
        if low == 0 and high == all_ones(width):
            raise P4RuntimeError.invalid_argument(
                f"{what}: the full range is a don't-care match; omit the field instead")
        return FieldMatch("range", low, high=high)
    # optional: a present field matches its value exactly.
    return FieldMatch("optional", decode_uint(fm.optional.value, width, what), mask=all_ones(width))


# The rules of one field of a match, shared with other entities that match like table entries (value set members).
decode_field = _decode_field


def decode_match(table: TableInfo, match: Sequence[p4runtime_pb2.FieldMatch], priority: int,
                 device_kinds: Sequence[str] | None = None) -> tuple[tuple[FieldMatch, ...], int]:
    """The softswitch key (JSON key order, wildcards filled in) and priority of a P4Runtime match.

    `device_kinds` are the match kinds of the table's BMv2 JSON key, where they differ from P4Info's:
    p4c-bm2-ss lowers P4Info OPTIONAL to a JSON "ternary" with an all-ones or zero mask, and P4_14
    "valid" matches appear as EXACT in P4Info. The key is built in the device's kinds.
    """
    given: dict[int, p4runtime_pb2.FieldMatch] = {}
    for fm in match:
        field = table.fields_by_id.get(fm.field_id)
        if field is None:
            raise P4RuntimeError.invalid_argument(f"table '{table.name}' has no match field with id {fm.field_id}")
        if fm.field_id in given:
            raise P4RuntimeError.invalid_argument(f"table '{table.name}' field '{field.name}' is given twice")
        given[fm.field_id] = fm
    key = []
    for field in table.match_fields:
        fm = given.get(field.id)
        if fm is not None:
            key.append(_decode_field(table, field, fm))
        elif field.kind == "exact":
            raise P4RuntimeError.invalid_argument(
                f"table '{table.name}': exact match field '{field.name}' is missing (exact fields cannot be omitted)")
        else:
            key.append(wildcard(field))
    if device_kinds is not None:
        key = [fm if kind == fm.kind else replace(fm, kind=kind) for fm, kind in zip(key, device_kinds)]
    if priority < 0:
        raise P4RuntimeError.invalid_argument(f"table '{table.name}': priority {priority} is negative")
    if table.needs_priority and priority == 0:
        raise P4RuntimeError.invalid_argument(
            f"table '{table.name}' has ternary/range/optional fields: entries need a priority > 0")
    if not table.needs_priority and priority != 0:
        raise P4RuntimeError.invalid_argument(
            f"table '{table.name}' has no ternary/range/optional field: priority must be 0, not {priority}")
    return tuple(key), priority


def encode_match(table: TableInfo, key: Sequence[FieldMatch]) -> list[p4runtime_pb2.FieldMatch]:
    """The canonical P4Runtime form of a softswitch key: don't-care fields omitted, shortest bytestrings."""
    if len(key) != len(table.match_fields):
        raise P4RuntimeError(grpc.StatusCode.INTERNAL,
                             f"table '{table.name}': device key has {len(key)} fields, P4Info {len(table.match_fields)}")
    result = []
    for field, match in zip(table.match_fields, key):
        if is_wildcard(field, match):
            continue
        fm = p4runtime_pb2.FieldMatch(field_id=field.id)
        width = field.bitwidth
        if field.kind == "exact":
            fm.exact.value = encode_uint(match.value, width)
        elif field.kind == "lpm":
            fm.lpm.value = encode_uint(match.value, width)
            fm.lpm.prefix_len = match.prefix_len or 0
        elif field.kind == "ternary":
            fm.ternary.value = encode_uint(match.value, width)
            fm.ternary.mask = encode_uint(match.mask if match.mask is not None else all_ones(width), width)
        elif field.kind == "range":
            fm.range.low = encode_uint(match.value, width)
            fm.range.high = encode_uint(match.high if match.high is not None else match.value, width)
        else:
            fm.optional.value = encode_uint(match.value, width)
        result.append(fm)
    return result


def match_fingerprint(match: Sequence[p4runtime_pb2.FieldMatch]) -> tuple[bytes, ...]:
    """A hashable identity of a canonical P4Runtime match (order-independent)."""
    return tuple(sorted(fm.SerializeToString(deterministic=True) for fm in match))


def decode_action(p4map: P4InfoMap, table: TableInfo, table_action: p4runtime_pb2.TableAction,
                  is_default: bool) -> tuple[ActionInfo, tuple[int, ...]]:
    """The action and parameter values (in declaration order) of a direct table entry."""
    kind = table_action.WhichOneof("type")
    if kind is None:
        raise P4RuntimeError.invalid_argument(f"table '{table.name}': the entry has no action")
    if kind != "action":
        raise P4RuntimeError.invalid_argument(
            f"table '{table.name}' is a direct table: give an action, not {kind}")
    action_id = table_action.action.action_id
    scope = table.action_scopes.get(action_id)
    if scope is None:
        name = p4map.actions.by_id[action_id].name if action_id in p4map.actions.by_id else f"id {action_id}"
        raise P4RuntimeError.invalid_argument(f"action {name} is not an action of table '{table.name}'")
    action = p4map.action(action_id)
    if is_default and scope == p4info_pb2.ActionRef.TABLE_ONLY:
        raise P4RuntimeError.permission_denied(
            f"action '{action.name}' is @tableonly in table '{table.name}': it cannot be the default action")
    if not is_default and scope == p4info_pb2.ActionRef.DEFAULT_ONLY:
        raise P4RuntimeError.permission_denied(
            f"action '{action.name}' is @defaultonly in table '{table.name}': it cannot be used by an entry")
    values: dict[int, int] = {}
    for param in table_action.action.params:
        info = action.params_by_id.get(param.param_id)
        if info is None:
            raise P4RuntimeError.invalid_argument(f"action '{action.name}' has no parameter with id {param.param_id}")
        if param.param_id in values:
            raise P4RuntimeError.invalid_argument(f"action '{action.name}' parameter '{info.name}' is given twice")
        values[param.param_id] = decode_uint(param.value, info.bitwidth,
                                             f"action '{action.name}' parameter '{info.name}'")
    missing = [p.name for p in action.params if p.id not in values]
    if missing:
        raise P4RuntimeError.invalid_argument(f"action '{action.name}' is missing parameter(s) {', '.join(missing)}")
    return action, tuple(values[p.id] for p in action.params)


def encode_action(p4map: P4InfoMap, action_name: str, params: Sequence[int]) -> p4runtime_pb2.TableAction:
    action = p4map.action_named(action_name)
    if len(params) != len(action.params):
        raise P4RuntimeError(grpc.StatusCode.INTERNAL,
                             f"action '{action.name}': device gives {len(params)} params, P4Info {len(action.params)}")
    table_action = p4runtime_pb2.TableAction()
    table_action.action.action_id = action.id
    for info, value in zip(action.params, params):
        table_action.action.params.add(param_id=info.id, value=encode_uint(value, info.bitwidth))
    return table_action


def encode_entry(p4map: P4InfoMap, table: TableInfo, entry: TableEntry) -> p4runtime_pb2.TableEntry:
    """The P4Runtime form of an entry read from the Device (no counter data, no metadata)."""
    msg = p4runtime_pb2.TableEntry(table_id=table.id)
    if entry.is_default:
        msg.is_default_action = True
    else:
        msg.match.extend(encode_match(table, entry.key))
        msg.priority = entry.priority
    if entry.member_id is not None:
        msg.action.action_profile_member_id = entry.member_id
    elif entry.group_id is not None:
        msg.action.action_profile_group_id = entry.group_id
    else:
        msg.action.CopyFrom(encode_action(p4map, entry.action, entry.params))
    return msg
