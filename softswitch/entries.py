"""Table entries as the Device and its P4Runtime server exchange them (see docs/softswitch.md).

All names are BMv2-JSON names (fully qualified, e.g. "MyIngress.workers"); values are plain ints.
"""

from __future__ import annotations

from dataclasses import dataclass

MATCH_KINDS = ("exact", "lpm", "ternary", "range", "valid", "optional")


@dataclass(frozen=True, slots=True)
class FieldMatch:
    """One key field of an entry, in the JSON key order.

    A wildcard (field omitted in P4Runtime) is: ternary mask=0, lpm prefix_len=0, range low=0 high=max,
    optional mask=0.
    """

    kind: str  # one of MATCH_KINDS
    value: int  # exact/lpm/ternary/optional value, range low
    mask: int | None = None  # ternary/optional mask (value & ~mask must be 0)
    prefix_len: int | None = None  # lpm
    high: int | None = None  # range high


@dataclass(frozen=True, slots=True)
class TableEntry:
    table: str
    key: tuple[FieldMatch, ...]
    action: str  # JSON action name
    params: tuple[int, ...]  # in the JSON action's runtime_data order
    priority: int = 0  # > 0 for ternary/range/optional tables (higher wins), 0 otherwise
    is_default: bool = False
    # Tables implemented with an action profile: the entry points at a member or (selectors) a group instead of
    # giving an action (`action` "" and `params` () then).
    member_id: int | None = None
    group_id: int | None = None


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What the P4Runtime server needs to validate requests against a table."""

    name: str
    match_kinds: tuple[str, ...]
    key_bitwidths: tuple[int, ...]
    key_names: tuple[str, ...]
    action_names: tuple[str, ...]
    size: int
    has_direct_counter: str | None
    default_is_const: bool
    has_const_entries: bool = False
    needs_priority: bool = False


@dataclass(frozen=True, slots=True)
class ValueSetInfo:
    """A parser value set: the widths of the key fields a member matches, and how many members it holds."""

    name: str
    widths: tuple[int, ...]
    size: int


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """A meter array: cells (0 for a direct meter, which has one per entry of `direct_table`) and unit."""

    name: str
    size: int
    unit: str  # "packets" | "bytes"
    direct_table: str | None


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    """An action profile (or, `with_selector`, an action selector): how many members it holds, the actions they
    may run, the tables it implements."""

    name: str
    size: int
    with_selector: bool
    actions: tuple[str, ...]
    tables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProfileMemberInfo:
    member_id: int
    action: str
    params: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ProfileGroupInfo:
    group_id: int
    members: tuple[tuple[int, int], ...]  # (member id, weight), by member id
    max_size: int


@dataclass(frozen=True, slots=True)
class DigestInfo:
    """A digest (learn list): the widths of the fields it sends."""

    name: str
    widths: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DigestSample:
    """One digest a packet sent: its learn list's name and the fields' values (unsigned, two's complement for
    signed fields), as they were at the end of ingress."""

    name: str
    values: tuple[int, ...]
