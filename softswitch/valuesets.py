"""Parser value sets at run time: the members the control plane wrote and the structures `select` checks.

A member gives one FieldMatch per key field of the value set (the fields of the select keys it is matched
against). The generated parser packs a select key into one int, each field padded to whole bytes with the first
field most significant (as BMv2's key builder does), so members are packed the same way once, when written:
exact-only members go into a set (one hash lookup per packet), members with masks (ternary, lpm, a wildcard
optional) into (value, mask) pairs, members with a range into pairs plus per-field bounds.

BMv2 keeps values only (a P4Info ternary/lpm/range member kind is ignored by p4c-bm2-ss, which warns); this
target honours the member kinds the control plane gives, which for exact members is the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

from .entries import MATCH_KINDS, FieldMatch, ValueSetInfo
from .errors import AlreadyExists, InvalidArgument, ResourceExhausted
from .program import ValueSet

Ranged = tuple[int, int, tuple[tuple[int, int, int, int], ...]]  # value, mask, ((shift, field mask, lo, hi), ...)


def key_layout(widths: Sequence[int]) -> tuple[int, ...]:
    """The shift of each field in a packed select key (fields padded to whole bytes, the first one highest)."""
    total = sum((w + 7) // 8 * 8 for w in widths)
    shifts = []
    for w in widths:
        total -= (w + 7) // 8 * 8
        shifts.append(total)
    return tuple(shifts)


class ValueSetRuntime:
    def __init__(self, spec: ValueSet) -> None:
        self.spec = spec
        self.name = spec.name
        self.widths = spec.widths
        self.shifts = key_layout(spec.widths)
        self.info = ValueSetInfo(spec.name, spec.widths, spec.max_size)
        self.members: list[tuple[FieldMatch, ...]] = []
        self.exact: set[int] = set()
        self.masked: list[tuple[int, int]] = []
        self.ranged: list[Ranged] = []
        # Bumped by every write, so that a native pipeline knows when to reload its copy.
        self.version = 0

    # -- packet path --------------------------------------------------------------------------------------
    def contains(self, key: int) -> bool:
        if key in self.exact:
            return True
        for value, mask in self.masked:
            if key & mask == value:
                return True
        for value, mask, bounds in self.ranged:
            if key & mask == value and all(lo <= (key >> shift) & fmask <= hi for shift, fmask, lo, hi in bounds):
                return True
        return False

    def contains_masked(self, key: int, case_mask: int) -> bool:
        """A case with a mask (BMv2 masks both the key and the members with it)."""
        key &= case_mask
        for value in self.exact:
            if (key ^ value) & case_mask == 0:
                return True
        for value, mask in self.masked:
            if (key ^ value) & mask & case_mask == 0:
                return True
        for value, mask, bounds in self.ranged:
            if (key ^ value) & mask & case_mask == 0 and all(lo <= (key >> shift) & fmask <= hi
                                                             for shift, fmask, lo, hi in bounds):
                return True
        return False

    # -- control plane ------------------------------------------------------------------------------------
    def _canonical(self, member: tuple[FieldMatch, ...], index: int) -> tuple:
        """(value, mask, low, high) per field; a wildcard field is (0, 0, 0, max)."""
        where = f"value set '{self.name}' member {index}"
        if not isinstance(member, tuple) or len(member) != len(self.widths):
            raise InvalidArgument(f"{where}: give one match per field ({len(self.widths)} fields)")
        fields = []
        for i, (fm, width) in enumerate(zip(member, self.widths)):
            full = (1 << width) - 1
            what = f"{where} field {i} ({width} bits)"
            if not isinstance(fm, FieldMatch) or fm.kind not in MATCH_KINDS or fm.kind == "valid":
                raise InvalidArgument(f"{what}: not an exact, lpm, ternary, range or optional match")
            if not isinstance(fm.value, int) or not 0 <= fm.value <= full:
                raise InvalidArgument(f"{what}: value {fm.value!r} does not fit")
            if fm.kind == "exact":
                fields.append((fm.value, full, fm.value, fm.value))
            elif fm.kind == "lpm":
                if not isinstance(fm.prefix_len, int) or not 0 <= fm.prefix_len <= width:
                    raise InvalidArgument(f"{what}: prefix length {fm.prefix_len!r} out of range")
                mask = full ^ ((1 << (width - fm.prefix_len)) - 1)
                if fm.value & ~mask:
                    raise InvalidArgument(f"{what}: value {fm.value:#x} has bits beyond its /{fm.prefix_len} prefix")
                fields.append((fm.value, mask, 0, full))
            elif fm.kind in ("ternary", "optional"):
                mask = full if fm.mask is None else fm.mask
                if not isinstance(mask, int) or not 0 <= mask <= full:
                    raise InvalidArgument(f"{what}: mask {mask!r} does not fit")
                if fm.kind == "optional" and mask not in (0, full):
                    raise InvalidArgument(f"{what}: an optional match is exact or wildcard")
                if fm.value & ~mask:
                    raise InvalidArgument(f"{what}: value {fm.value:#x} has bits outside mask {mask:#x}")
                fields.append((fm.value, mask, 0, full))
            else:
                high = full if fm.high is None else fm.high
                if not isinstance(high, int) or not fm.value <= high <= full:
                    raise InvalidArgument(f"{what}: range [{fm.value}, {high!r}] is empty or does not fit")
                fields.append((0, 0, fm.value, high))
        return tuple(fields)

    def write(self, members: Sequence[tuple[FieldMatch, ...]]) -> None:
        """Replace every member (P4Runtime's MODIFY of a ValueSetEntry)."""
        members = list(members)
        if len(members) > self.spec.max_size:
            raise ResourceExhausted(f"value set '{self.name}' holds at most {self.spec.max_size} members, "
                                    f"got {len(members)}")
        canonical = []
        seen: dict[tuple, int] = {}
        for index, member in enumerate(members):
            fields = self._canonical(member, index)
            if fields in seen:
                raise AlreadyExists(f"value set '{self.name}': member {index} repeats member {seen[fields]}")
            seen[fields] = index
            canonical.append(fields)
        exact: set[int] = set()
        masked: list[tuple[int, int]] = []
        ranged: list[Ranged] = []
        for fields in canonical:
            value = mask = 0
            bounds = []
            for (v, m, lo, hi), shift, width in zip(fields, self.shifts, self.widths):
                value |= v << shift
                mask |= m << shift
                if m == 0 and (lo, hi) != (0, (1 << width) - 1):
                    bounds.append((shift, (1 << width) - 1, lo, hi))
            if bounds:
                ranged.append((value, mask, tuple(bounds)))
            elif all(m == (1 << w) - 1 for (_, m, _, _), w in zip(fields, self.widths)):
                exact.add(value)
            else:
                masked.append((value, mask))
        # The generated parser holds bound methods of this object: update the structures in place.
        self.exact.clear()
        self.exact.update(exact)
        self.masked[:] = masked
        self.ranged[:] = ranged
        self.members = members
        self.version += 1

    def read(self) -> list[tuple[FieldMatch, ...]]:
        return list(self.members)

    def clear(self) -> None:
        self.write([])
