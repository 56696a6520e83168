"""Layout of the packet header vector (PHV): one flat Python list per packet.

Every field of every header instance (metadata included) gets one slot holding a Python int; every header
gets a validity slot (a bool) just before its fields, so a header's fields are one contiguous slice (which
lets byte-aligned headers be extracted with one struct.unpack_from into a slice). A few hidden slots at the
front carry per-packet target state that BMv2 keeps in packet registers (exit flag, clone/resubmit/recirculate
requests, packet length): keeping them in the same list makes a PHV copy a single `list(phv)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidArgument
from .program import Program

# Hidden slots (indices into the PHV list).
H_EXIT = 0  # bool: `exit` was executed; the pipeline stops at the next node
H_CLONE = 1  # None, or (session_id, field_list_id) requested by clone_*_pkt_to_egress
H_RESUBMIT = 2  # None, or the field list id given to resubmit
H_RECIRC = 3  # None, or the field list id given to recirculate
H_PKTLEN = 4  # packet length BMv2 keeps in a packet register (add/remove_header adjust it)
H_INGLEN = 5  # length of the packet as received (counters count these bytes, as BMv2 does)
H_TRUNC = 6  # 0, or the length to truncate the packet to on output (v1model truncate())
H_DIGEST = 7  # 0, or the learn list id of the digest the packet sends at the end of ingress (the last one asked)
HIDDEN_SLOTS = 8

# BMv2 simple_switch packet instance types (standard_metadata.instance_type).
PKT_INSTANCE_TYPE_NORMAL = 0
PKT_INSTANCE_TYPE_INGRESS_CLONE = 1
PKT_INSTANCE_TYPE_EGRESS_CLONE = 2
PKT_INSTANCE_TYPE_COALESCED = 3
PKT_INSTANCE_TYPE_RECIRC = 4
PKT_INSTANCE_TYPE_REPLICATION = 5
PKT_INSTANCE_TYPE_RESUBMIT = 6

DROP_PORT = 511


def varbit_limbs(width: int) -> int:
    """64-bit limbs the native pipeline keeps a varbit field of at most `width` bits in."""
    return max(1, (width + 63) // 64)


@dataclass(frozen=True, slots=True)
class StandardSlots:
    """PHV slots of the v1model standard metadata the target reads or writes (None: not in this program)."""

    ingress_port: int
    egress_spec: int
    egress_port: int | None
    instance_type: int | None
    packet_length: int | None
    mcast_grp: int | None
    egress_rid: int | None
    checksum_error: int | None
    parser_error: int | None
    ingress_global_timestamp: int | None
    egress_global_timestamp: int | None


class PhvLayout:
    """Maps header fields onto PHV slots and builds the initial PHV of a packet.

    A header is a block: its validity slot, then one slot per field, then (a header with a varbit field) the
    varbit's current width in bits and the varbit's further 64-bit limbs (the Python pipeline holds the whole
    value in the field's own slot; the native one keeps its least significant 64 bits there and the rest in
    the limbs). All headers of one type have blocks of one shape, so a header chosen at run time (a stack
    element by index, one side of a `?:`) is a base slot plus the same offsets as any other. The elements
    of a header stack, the members of a union, and the unions of a union stack lie next to each other, so
    element i of a stack starts at `stack_base + i * stack_stride`. Each stack has one more slot after the
    headers: its next index (the count of elements extracted or pushed so far)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self._field_slot: dict[tuple[str, str], int] = {}
        self._valid_slot: dict[str, int] = {}
        self._first_field: dict[str, int] = {}
        self._span: dict[str, int] = {}
        self._varbit: dict[str, tuple[int, int, tuple[int, ...]]] = {}  # header -> (value, width, limbs)
        self._next_slot: dict[str, int] = {}
        initial: list[object] = [False, None, None, None, 0, 0, 0, 0]
        assert len(initial) == HIDDEN_SLOTS
        for name in program.headers:
            for member in self._group(name):
                if member not in self._valid_slot:
                    self._place(member, initial)
        for stack in list(program.stacks) + list(program.union_stacks):
            self._next_slot[stack] = len(initial)
            initial.append(0)
        self.initial: tuple[object, ...] = tuple(initial)
        self.size = len(initial)
        self.std = StandardSlots(
            ingress_port=self._required("standard_metadata.ingress_port"),
            egress_spec=self._required("standard_metadata.egress_spec"),
            egress_port=self._optional("standard_metadata.egress_port"),
            instance_type=self._optional("standard_metadata.instance_type"),
            packet_length=self._optional("standard_metadata.packet_length"),
            mcast_grp=self._optional("intrinsic_metadata.mcast_grp", "standard_metadata.mcast_grp"),
            egress_rid=self._optional("intrinsic_metadata.egress_rid", "standard_metadata.egress_rid"),
            checksum_error=self._optional("standard_metadata.checksum_error"),
            parser_error=self._optional("standard_metadata.parser_error"),
            ingress_global_timestamp=self._optional(
                "intrinsic_metadata.ingress_global_timestamp", "standard_metadata.ingress_global_timestamp"
            ),
            egress_global_timestamp=self._optional(
                "intrinsic_metadata.egress_global_timestamp", "standard_metadata.egress_global_timestamp"
            ),
        )
        # Slots that hold metadata (reset when BMv2 "resets metadata" for clones/resubmits/recirculations).
        self.metadata_slots: tuple[int, ...] = tuple(
            slot
            for name, header in program.headers.items()
            if header.metadata
            for slot in range(self._first_field[name], self._first_field[name] + self._span[name])
        )

    def _group(self, header: str) -> list[str]:
        """The headers that must lie next to `header`, in order: its whole stack, union or union stack."""
        program = self.program
        if header in program.union_of:
            union = program.union_of[header][0]
            unions = [union]
            if union in program.union_stack_of:
                unions = list(program.union_stacks[program.union_stack_of[union][0]].elements)
            return [h for u in unions for _, h in program.unions[u].members]
        for stack in program.stacks.values():
            if header in stack.elements:
                return list(stack.elements)
        return [header]

    def _place(self, name: str, initial: list[object]) -> None:
        header = self.program.headers[name]
        self._valid_slot[name] = len(initial)
        self._field_slot[(name, "$valid$")] = len(initial)
        # BMv2 metadata headers are always valid.
        initial.append(bool(header.metadata))
        self._first_field[name] = len(initial)
        for spec in header.type.fields:
            self._field_slot[(name, spec.name)] = len(initial)
            initial.append(0)
        varbit = header.type.varbit
        if varbit is not None:
            width = len(initial)
            initial.append(0)
            limbs = [self._field_slot[(name, varbit.name)]]
            for _ in range(varbit_limbs(varbit.width) - 1):
                limbs.append(len(initial))
                initial.append(0)
            self._varbit[name] = (limbs[0], width, tuple(limbs))
        self._span[name] = len(initial) - self._first_field[name]
    def _required(self, dotted: str) -> int:
        slot = self._optional(dotted)
        if slot is None:
            raise InvalidArgument(f"v1model program lacks {dotted}")
        return slot

    def _optional(self, *names: str) -> int | None:
        for dotted in names:
            ref = self.program.resolve_alias(dotted)
            if ref is not None:
                return self._field_slot[ref]
        return None

    def slot(self, header: str, field: str) -> int:
        try:
            return self._field_slot[(header, field)]
        except KeyError:
            raise InvalidArgument(f"reference to unknown field '{header}.{field}'") from None

    def valid_slot(self, header: str) -> int:
        try:
            return self._valid_slot[header]
        except KeyError:
            raise InvalidArgument(f"reference to unknown header '{header}'") from None

    def first_field_slot(self, header: str) -> int:
        return self._first_field[header]

    def span(self, header: str) -> int:
        """Slots of the header after its validity slot: fields, then a varbit's width and further limbs."""
        return self._span[header]

    def varbit_slots(self, header: str) -> tuple[int, int, tuple[int, ...]]:
        """(value slot, width slot, limb slots) of the header's varbit field (KeyError: it has none)."""
        return self._varbit[header]

    # -- stacks and unions: element i of a stack starts at base + i * stride ---------------------------------
    def stack_base(self, stack: str) -> int:
        if stack in self.program.stacks:
            return self._valid_slot[self.program.stacks[stack].elements[0]]
        return self.union_base(self._union_stack(stack).elements[0])

    def stack_stride(self, stack: str) -> int:
        if stack in self.program.stacks:
            return 1 + self._span[self.program.stacks[stack].elements[0]]
        return sum(1 + self._span[h] for _, h in self.program.unions[self._union_stack(stack).elements[0]].members)

    def stack_size(self, stack: str) -> int:
        if stack in self.program.stacks:
            return len(self.program.stacks[stack].elements)
        return len(self._union_stack(stack).elements)

    def stack_next_slot(self, stack: str) -> int:
        return self._next_slot[stack]

    def _union_stack(self, stack: str):
        try:
            return self.program.union_stacks[stack]
        except KeyError:
            raise InvalidArgument(f"reference to unknown header stack '{stack}'") from None

    def union_base(self, union: str) -> int:
        """The validity slot of the union's first member; member i's block starts at base + offsets[i]."""
        return self._valid_slot[self.program.unions[union].members[0][1]]

    def union_offsets(self, union: str) -> tuple[int, ...]:
        base = self.union_base(union)
        return tuple(self._valid_slot[h] - base for _, h in self.program.unions[union].members)

    def fresh(self) -> list[object]:
        return list(self.initial)
