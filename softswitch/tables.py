"""Match tables at run time: entry storage for the control plane and the lookup structures packets use.

Generated pipeline code builds the lookup key (an int for one key field, a tuple otherwise) and either indexes
`exact` directly (tables whose fields are all exact/valid) or calls `lookup`. A hit yields the runtime entry
tuple `(action_fn, params, action_name, counter_cell, meter_slot)`; `counter_cell` is a `[packets, bytes]` list for
tables with direct counters, `meter_slot` the entry's cell of the table's direct meter (None without one). An
entry keeps its meter slot while it exists (a modify keeps it); a new entry gets a free slot, unconfigured.

Non-exact tables use tuple-space search: entries are grouped by their mask tuple (one dict per distinct mask),
groups are visited in decreasing order of their best priority, and the search stops as soon as no remaining
group can beat the best match. LPM priority is the prefix length; ternary/optional/range priority is the
entry's priority (P4Runtime: higher wins). Tables with a range field fall back to a priority-ordered scan.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .entries import FieldMatch, TableEntry, TableInfo
from .errors import AlreadyExists, InvalidArgument, NotFound, OutOfRange, PermissionDenied, ResourceExhausted
from .meters import MeterArrayState
from .profiles import ActionProfileRuntime
from .program import ConstEntry, Table, parse_hexstr

RuntimeEntry = tuple[Callable, tuple, str, list | None, int | None]

# BMv2 JSON const entries use "lower number wins"; stored priorities use P4Runtime's "higher wins".
CONST_PRIORITY_BASE = (1 << 31) - 1

_PRIORITY_KINDS = ("ternary", "range", "optional")


@dataclass(slots=True)
class _Stored:
    entry: TableEntry
    runtime: RuntimeEntry
    priority: int  # effective priority for matching
    masks: tuple[int, ...]
    values: tuple[int, ...]  # masked values (ranges: low)
    highs: tuple[int | None, ...]  # range highs (None for non-range fields)


class TableRuntime:
    def __init__(self, spec: Table, action_fns: dict[str, Callable], action_widths: dict[str, tuple[int, ...]],
                 direct_meter: MeterArrayState | None = None, profile: ActionProfileRuntime | None = None):
        self.spec = spec
        # Tables implemented with an action profile: an entry's runtime holds the member or group it points at
        # (which has `pick(F)`) where other tables hold the action function.
        self.profile = profile
        self.name = spec.name
        self.kinds = tuple(k.match_type for k in spec.keys)
        self.widths = tuple(k.width for k in spec.keys)
        self.single = len(spec.keys) == 1
        self.exact_only = all(kind in ("exact", "valid") for kind in self.kinds)
        self.has_range = "range" in self.kinds
        self.needs_priority = any(kind in _PRIORITY_KINDS for kind in self.kinds)
        self.lpm_priority = not self.needs_priority and "lpm" in self.kinds
        self.action_fns = action_fns
        self.action_widths = action_widths
        self.exact: dict[Any, RuntimeEntry] = {}
        self.default: RuntimeEntry | None = None
        self.default_entry: TableEntry | None = None
        self._stored: dict[tuple, _Stored] = {}
        self._groups: list[tuple[int, Any, dict]] = []
        self._scan: list[_Stored] = []
        self.immutable = bool(spec.const_entries)
        self.direct_meter = direct_meter
        self._free_meter_slots: list[int] = list(range(direct_meter.size)) if direct_meter else []  # a heap
        # Bumped by every change of entries or default, so that a native pipeline knows when to reload its copy.
        self.version = 0
        self.info = TableInfo(
            name=spec.name,
            match_kinds=self.kinds,
            key_bitwidths=self.widths,
            key_names=tuple(k.name for k in spec.keys),
            action_names=spec.actions,
            size=spec.size,
            has_direct_counter=None,
            default_is_const=bool(spec.default_entry and (spec.default_entry.action_const or spec.default_entry.entry_const)),
            has_const_entries=bool(spec.const_entries),
            needs_priority=self.needs_priority,
        )

    # -- packet path --------------------------------------------------------------------------------------
    def lookup(self, key: Any) -> RuntimeEntry | None:
        if self.exact_only:
            return self.exact.get(key)
        if self.has_range:
            return self._scan_lookup(key)
        best = None
        best_priority = -1
        single = self.single
        for max_priority, mask, bucket in self._groups:
            if max_priority <= best_priority:
                break
            masked = key & mask if single else tuple(map(operator.and_, key, mask))
            found = bucket.get(masked)
            if found is not None and found[0].priority > best_priority:
                best_priority = found[0].priority
                best = found[0].runtime
        return best

    def _scan_lookup(self, key: Any) -> RuntimeEntry | None:
        keys = (key,) if self.single else key
        for stored in self._scan:
            for k, mask, value, high in zip(keys, stored.masks, stored.values, stored.highs):
                if high is not None:
                    if not value <= k <= high:
                        break
                elif k & mask != value:
                    break
            else:
                return stored.runtime
        return None

    # -- control plane ------------------------------------------------------------------------------------
    def make_runtime(self, action: str, params: tuple[int, ...], counter: list | None,
                     meter_slot: int | None = None) -> RuntimeEntry:
        if action not in self.action_fns:
            raise InvalidArgument(f"table '{self.name}' has no action '{action}' (actions: {', '.join(self.spec.actions)})")
        widths = self.action_widths[action]
        if len(params) != len(widths):
            raise InvalidArgument(f"action '{action}' takes {len(widths)} parameters, got {len(params)}")
        for i, (value, width) in enumerate(zip(params, widths)):
            if not isinstance(value, int) or not 0 <= value < (1 << width):
                raise InvalidArgument(f"action '{action}' parameter {i} ({width} bits) cannot hold {value!r}")
        return (self.action_fns[action], tuple(params), action, counter, meter_slot)

    def _canonical(self, entry: TableEntry) -> tuple[tuple, tuple[int, ...], tuple[int, ...], tuple, int]:
        """(identity key, masks, masked values, range highs, effective priority) of an entry, validated."""
        if entry.table != self.name:
            raise InvalidArgument(f"entry for table '{entry.table}' given to table '{self.name}'")
        if len(entry.key) != len(self.kinds):
            raise InvalidArgument(f"table '{self.name}' has {len(self.kinds)} key fields, entry has {len(entry.key)}")
        if self.needs_priority:
            if not isinstance(entry.priority, int) or entry.priority <= 0:
                raise InvalidArgument(f"table '{self.name}' needs a priority > 0 (ternary/range/optional keys)")
        elif entry.priority != 0:
            raise InvalidArgument(f"table '{self.name}' takes no priority (only exact/lpm keys)")
        ident, masks, values, highs = [], [], [], []
        prefix = 0
        for i, (fm, kind, width) in enumerate(zip(entry.key, self.kinds, self.widths)):
            full = (1 << width) - 1
            where = f"table '{self.name}' key field {i} ({self.spec.keys[i].name}, {kind}, {width} bits)"
            if not isinstance(fm, FieldMatch):
                raise InvalidArgument(f"{where}: not a FieldMatch")
            if fm.kind == "optional" and kind == "ternary":
                kind = "optional"  # p4c lowers optional keys to ternary in the JSON; keep optional's checks
            elif fm.kind != kind:
                raise InvalidArgument(f"{where}: got a {fm.kind} match")
            if not isinstance(fm.value, int) or not 0 <= fm.value <= full:
                raise InvalidArgument(f"{where}: value {fm.value!r} does not fit")
            if kind in ("exact", "valid"):
                ident.append(fm.value)
                masks.append(full)
                values.append(fm.value)
                highs.append(None)
            elif kind == "lpm":
                plen = fm.prefix_len
                if not isinstance(plen, int) or not 0 <= plen <= width:
                    raise InvalidArgument(f"{where}: prefix length {plen!r} out of range")
                mask = full ^ ((1 << (width - plen)) - 1)
                if fm.value & ~mask:
                    raise InvalidArgument(f"{where}: value {fm.value:#x} has bits beyond its /{plen} prefix")
                ident.append((fm.value, plen))
                masks.append(mask)
                values.append(fm.value)
                highs.append(None)
                prefix = plen
            elif kind in ("ternary", "optional"):
                mask = fm.mask if fm.mask is not None else full
                if not isinstance(mask, int) or not 0 <= mask <= full:
                    raise InvalidArgument(f"{where}: mask {mask!r} does not fit")
                if kind == "optional" and mask not in (0, full):
                    raise InvalidArgument(f"{where}: an optional match is exact or wildcard, not mask {mask:#x}")
                if fm.value & ~mask:
                    raise InvalidArgument(f"{where}: value {fm.value:#x} has bits outside mask {mask:#x}")
                ident.append((fm.value, mask))
                masks.append(mask)
                values.append(fm.value)
                highs.append(None)
            elif kind == "range":
                high = fm.high if fm.high is not None else full
                if not isinstance(high, int) or not fm.value <= high <= full:
                    raise InvalidArgument(f"{where}: range [{fm.value}, {high!r}] is empty or does not fit")
                ident.append((fm.value, high))
                masks.append(full)
                values.append(fm.value)
                highs.append(high)
            else:
                raise InvalidArgument(f"{where}: unknown match kind")
        priority = entry.priority if self.needs_priority else (prefix if self.lpm_priority else 0)
        identity = (tuple(ident), entry.priority)
        return identity, tuple(masks), tuple(values), tuple(highs), priority

    def insert(self, entry: TableEntry, counter: list | None, *, const: bool = False) -> None:
        if self.immutable and not const:
            raise PermissionDenied(f"table '{self.name}' has const entries; it cannot be written")
        identity, masks, values, highs, priority = self._canonical(entry)
        if identity in self._stored:
            raise AlreadyExists(f"table '{self.name}' already has this entry")
        if len(self._stored) >= self.spec.size:
            raise ResourceExhausted(f"table '{self.name}' is full ({self.spec.size} entries)")
        runtime = self._entry_runtime(entry, counter, None)
        if self.direct_meter is not None:
            # The lowest free slot (like BMv2's entry handles), unconfigured: every packet GREEN until configured.
            slot = heapq.heappop(self._free_meter_slots)
            self.direct_meter.set(slot, None)
            runtime = runtime[:4] + (slot,)
        self._stored[identity] = _Stored(entry, runtime, priority, masks, values, highs)
        self._rebuild_one(identity, added=True)
        self.version += 1

    def modify(self, entry: TableEntry) -> None:
        if self.immutable:
            raise PermissionDenied(f"table '{self.name}' has const entries; it cannot be written")
        identity, *_ = self._canonical(entry)
        stored = self._stored.get(identity)
        if stored is None:
            raise NotFound(f"table '{self.name}' has no such entry to modify")
        runtime = self._entry_runtime(entry, stored.runtime[3], stored.runtime[4])
        self._detach(stored)
        stored.entry = entry
        stored.runtime = runtime
        self._rebuild_one(identity, added=False)
        self.version += 1

    def delete(self, entry: TableEntry) -> None:
        if self.immutable:
            raise PermissionDenied(f"table '{self.name}' has const entries; it cannot be written")
        identity, *_ = self._canonical(entry)
        if identity not in self._stored:
            raise NotFound(f"table '{self.name}' has no such entry to delete")
        stored = self._stored.pop(identity)
        self._remove_from_index(stored)
        self._release_meter_slot(stored)
        self._detach(stored)
        self.version += 1

    def _entry_runtime(self, entry: TableEntry, counter: list | None, meter_slot: int | None) -> RuntimeEntry:
        """The runtime of an entry being written: its action, or the member or group it points at (counted as a
        reference, so that the profile refuses to delete it while the entry exists)."""
        if self.profile is None:
            if entry.member_id is not None or entry.group_id is not None:
                raise InvalidArgument(f"table '{self.name}' has no action profile: give an action, not a member "
                                      "or a group")
            return self.make_runtime(entry.action, entry.params, counter, meter_slot)
        target = self.profile.resolver(entry.member_id, entry.group_id)
        self.profile.attach(target, 1)
        return (target, (), "", counter, meter_slot)  # type: ignore[return-value]

    def _detach(self, stored: _Stored) -> None:
        if self.profile is not None:
            self.profile.attach(stored.runtime[0], -1)  # type: ignore[arg-type]

    def _release_meter_slot(self, stored: _Stored) -> None:
        slot = stored.runtime[4]
        if slot is not None and self.direct_meter is not None:
            self.direct_meter.set(slot, None)
            heapq.heappush(self._free_meter_slots, slot)

    def find(self, key: tuple[FieldMatch, ...], priority: int) -> _Stored:
        probe = TableEntry(self.name, key, "", (), priority)
        identity, *_ = self._canonical(probe)
        stored = self._stored.get(identity)
        if stored is None:
            raise NotFound(f"table '{self.name}' has no entry with this key and priority")
        return stored

    def entries(self) -> list[TableEntry]:
        return [s.entry for s in self._stored.values()]

    def clear(self) -> None:
        for stored in self._stored.values():
            self._release_meter_slot(stored)
            self._detach(stored)
        self._stored.clear()
        self.exact.clear()
        self._groups.clear()
        self._scan.clear()
        self.version += 1

    def set_default(self, runtime: RuntimeEntry | None, entry: TableEntry | None) -> None:
        """The action a miss runs (None: nothing), and the entry that set it (None: the program's default)."""
        self.default = runtime
        self.default_entry = entry
        self.version += 1

    def match_order(self) -> list[_Stored]:
        """The entries in the order a first-match scan must visit them to pick what `lookup` picks: by falling
        priority, ties in the order of the tuple-space groups (the first group with the best priority wins)."""
        if self.exact_only:
            return list(self._stored.values())
        if self.has_range:
            return list(self._scan)
        ordered = [(-s.priority, g, s) for g, (_, _, bucket) in enumerate(self._groups)
                   for candidates in bucket.values() for s in candidates]
        ordered.sort(key=lambda item: item[:2])
        return [s for _, _, s in ordered]

    # -- index maintenance --------------------------------------------------------------------------------
    def _lookup_key(self, stored: _Stored) -> Any:
        return stored.values[0] if self.single else stored.values

    def _rebuild_one(self, identity: tuple, added: bool) -> None:
        stored = self._stored[identity]
        if self.exact_only:
            self.exact[self._lookup_key(stored)] = stored.runtime
            return
        if self.has_range:
            self._scan = sorted(self._stored.values(), key=lambda s: -s.priority)
            return
        if not added:
            return  # same key and priority: the bucket already holds `stored`, whose runtime was replaced
        mask = stored.masks[0] if self.single else stored.masks
        for i, (max_priority, group_mask, bucket) in enumerate(self._groups):
            if group_mask == mask:
                break
        else:
            bucket = {}
            self._groups.append((stored.priority, mask, bucket))
            i = len(self._groups) - 1
        key = self._lookup_key(stored)
        candidates = [c for c in bucket.get(key, []) if c is not stored] + [stored]
        candidates.sort(key=lambda s: -s.priority)
        bucket[key] = candidates
        self._groups[i] = (max(self._groups[i][0], stored.priority), mask, bucket)
        self._groups.sort(key=lambda g: -g[0])

    def _remove_from_index(self, stored: _Stored) -> None:
        if self.exact_only:
            self.exact.pop(self._lookup_key(stored), None)
            return
        if self.has_range:
            self._scan = sorted(self._stored.values(), key=lambda s: -s.priority)
            return
        mask = stored.masks[0] if self.single else stored.masks
        key = self._lookup_key(stored)
        for i, (_, group_mask, bucket) in enumerate(self._groups):
            if group_mask != mask:
                continue
            remaining = [c for c in bucket.get(key, []) if c is not stored]
            if remaining:
                bucket[key] = remaining
            else:
                bucket.pop(key, None)
            if not bucket:
                del self._groups[i]
            else:
                best = max(c.priority for cands in bucket.values() for c in cands)
                self._groups[i] = (best, mask, bucket)
            self._groups.sort(key=lambda g: -g[0])
            return

    # -- const entries from the JSON ----------------------------------------------------------------------
    def entry_from_json(self, const: ConstEntry) -> TableEntry:
        if len(const.key) != len(self.kinds):
            raise InvalidArgument(f"table '{self.name}': const entry has {len(const.key)} key fields")
        key = []
        for i, (mk, kind, width) in enumerate(zip(const.key, self.kinds, self.widths)):
            if mk.get("match_type") != kind:
                raise InvalidArgument(f"table '{self.name}': const entry field {i} is {mk.get('match_type')}, not {kind}")
            if kind == "valid":
                key.append(FieldMatch("valid", 1 if mk["key"] else 0))
            elif kind == "exact":
                key.append(FieldMatch("exact", parse_hexstr(mk["key"])))
            elif kind == "lpm":
                # p4c writes the key as the program spells it; bits past the prefix do not take part in the
                # match (BMv2 masks them), so they are cleared here too.
                plen = int(mk["prefix_length"])
                mask = ((1 << width) - 1) ^ ((1 << max(width - plen, 0)) - 1)
                key.append(FieldMatch("lpm", parse_hexstr(mk["key"]) & mask, prefix_len=plen))
            elif kind in ("ternary", "optional"):
                value, mask = parse_hexstr(mk["key"]), parse_hexstr(mk["mask"])
                key.append(FieldMatch(kind, value & mask, mask=mask))
            elif kind == "range":
                key.append(FieldMatch("range", parse_hexstr(mk["start"]), high=parse_hexstr(mk["end"])))
        priority = 0
        if self.needs_priority:
            if not 0 <= const.priority < CONST_PRIORITY_BASE:
                raise OutOfRange(f"table '{self.name}': const entry priority {const.priority} out of range")
            priority = CONST_PRIORITY_BASE - const.priority
        return TableEntry(self.name, tuple(key), const.action, const.params, priority)
