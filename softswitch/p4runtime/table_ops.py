"""P4Runtime TableEntry and DirectCounterEntry writes and reads, applied to the softswitch Device.

The Device stores entries (key, action, params, priority) and their direct counters; the two opaque
per-entry fields of P4Runtime (`controller_metadata`, `metadata`) live here, keyed by the canonical
match, so that what a client writes it reads back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING


from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.entries import TableEntry
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError, device_errors
from omnireduce.softswitch.p4runtime.meter_ops import decode_config, encode_config
from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap, TableInfo
from omnireduce.softswitch.p4runtime.entry_codec import (
    decode_action,
    decode_match,
    encode_entry,
    encode_match,
    match_fingerprint,
)

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device

log = logging.getLogger(__name__)

Update = p4runtime_pb2.Update
_EntryId = tuple[int, tuple[bytes, ...], int]   # (table id, match fingerprint, priority)


class TableOps:
    """Table entries and direct counters of one Device under one P4Info."""

    def __init__(self, device: Device, p4map: P4InfoMap) -> None:
        self.device = device
        self.p4map = p4map
        self._opaque: dict[_EntryId, tuple[int, bytes]] = {}   # controller_metadata, metadata
        self._kinds: dict[str, tuple[str, ...]] = {}

    def device_kinds(self, table: TableInfo) -> tuple[str, ...]:
        """The match kinds of `table`'s key as the Device (BMv2 JSON) has them."""
        kinds = self._kinds.get(table.name)
        if kinds is None:
            with device_errors():
                kinds = tuple(self.device.table_info(table.name).match_kinds)
            self._kinds[table.name] = kinds
        return kinds

    # --- writes ----------------------------------------------------------------------------------------
    def write(self, update_type: int, msg: p4runtime_pb2.TableEntry) -> None:
        table = self.p4map.table(msg.table_id)
        if msg.is_const:
            raise P4RuntimeError.invalid_argument(f"table '{table.name}': is_const must be false in a write")
        if msg.HasField("time_since_last_hit"):
            raise P4RuntimeError.invalid_argument(
                f"table '{table.name}': time_since_last_hit must not be set in a write")
        if msg.HasField("meter_counter_data"):
            raise P4RuntimeError.unimplemented("per-color meter counters (meter_counter_data) are not supported")
        metered = table.id in self.p4map.table_direct_meter
        if msg.HasField("meter_config") and not metered:
            raise P4RuntimeError.invalid_argument(
                f"table '{table.name}' has no direct meter, yet the entry carries meter_config")
        if msg.idle_timeout_ns:
            raise P4RuntimeError.invalid_argument(f"table '{table.name}' does not support idle timeout")
        if msg.HasField("counter_data") and not table.direct_counter_id:
            raise P4RuntimeError.invalid_argument(
                f"table '{table.name}' has no direct counter, yet the entry carries counter_data")
        profile = self.p4map.table_profile.get(table.id)
        if msg.is_default_action:
            if profile is not None:
                raise P4RuntimeError.invalid_argument(
                    f"table '{table.name}' is implemented by action profile '{profile.name}': it has no default "
                    "action (BMv2 runs nothing on a miss)")
            self._write_default(update_type, table, msg)
            return
        if table.is_const:
            raise P4RuntimeError.permission_denied(f"table '{table.name}' has const entries: they cannot be changed")
        if not table.match_fields and update_type == Update.INSERT:
            raise P4RuntimeError.invalid_argument(
                f"table '{table.name}' has no key: it holds no entries, only its default entry (MODIFY that)")
        key, priority = decode_match(table, msg.match, msg.priority, self.device_kinds(table))
        entry_id = (table.id, match_fingerprint(encode_match(table, key)), priority)
        if update_type == Update.DELETE:
            with device_errors():
                self.device.table_delete(TableEntry(table.name, key, "", (), priority))
            self._opaque.pop(entry_id, None)
            return
        if update_type not in (Update.INSERT, Update.MODIFY):
            raise P4RuntimeError.invalid_argument(f"update type {update_type} is not INSERT, MODIFY or DELETE")
        if profile is not None:
            entry = TableEntry(table.name, key, "", (), priority, **self._profile_reference(table, profile, msg))
        else:
            action, params = decode_action(self.p4map, table, msg.action, is_default=False)
            entry = TableEntry(table.name, key, action.name, params, priority)
        meter_config = None
        if msg.HasField("meter_config"):
            meter_config = decode_config(msg.meter_config, f"direct meter of table '{table.name}'")
        with device_errors():
            if update_type == Update.INSERT:
                self.device.table_insert(entry)
            else:
                self.device.table_modify(entry)
            if msg.HasField("counter_data"):
                self.device.direct_counter_write(table.name, key, priority,
                                                 msg.counter_data.packet_count, msg.counter_data.byte_count)
            # The spec: an INSERT without meter_config leaves the (new, default) meter alone; a MODIFY without it
            # resets the meter to its default.
            if metered and (meter_config is not None or update_type == Update.MODIFY):
                self.device.direct_meter_set(table.name, key, priority, meter_config)
        if msg.controller_metadata or msg.metadata:
            self._opaque[entry_id] = (msg.controller_metadata, msg.metadata)
        else:
            self._opaque.pop(entry_id, None)

    @staticmethod
    def _profile_reference(table: TableInfo, profile, msg: p4runtime_pb2.TableEntry) -> dict:
        """The member or group an entry of a table implemented by an action profile points at."""
        kind = msg.action.WhichOneof("type")
        if kind == "action_profile_member_id":
            return {"member_id": msg.action.action_profile_member_id}
        if kind == "action_profile_group_id":
            if not profile.with_selector:
                raise P4RuntimeError.invalid_argument(
                    f"table '{table.name}': action profile '{profile.name}' has no selector, so no groups")
            return {"group_id": msg.action.action_profile_group_id}
        if kind == "action_profile_action_set":
            raise P4RuntimeError.unimplemented(
                f"table '{table.name}': one-shot action selector programming is not supported; write members "
                f"and a group of action profile '{profile.name}' and point the entry at the group")
        raise P4RuntimeError.invalid_argument(
            f"table '{table.name}' is implemented by action profile '{profile.name}': give an "
            "action_profile_member_id" + (" or an action_profile_group_id" if profile.with_selector else "")
            + (", not an action" if kind == "action" else ""))

    def _write_default(self, update_type: int, table: TableInfo, msg: p4runtime_pb2.TableEntry) -> None:
        if msg.match or msg.priority:
            raise P4RuntimeError.invalid_argument(
                f"table '{table.name}': the default entry has no match and priority 0")
        if update_type != Update.MODIFY:
            raise P4RuntimeError.invalid_argument(
                f"table '{table.name}': the default entry always exists; it can only be MODIFYed, not "
                f"{Update.Type.Name(update_type)}")
        if table.const_default_action_id:
            raise P4RuntimeError.permission_denied(f"table '{table.name}' has a const default action")
        if msg.HasField("counter_data"):
            raise P4RuntimeError.unimplemented("direct counters of default entries are not supported")
        if msg.HasField("meter_config"):
            raise P4RuntimeError.unimplemented(
                f"table '{table.name}': BMv2 runs direct meters on hits only; the default entry has none")
        with device_errors():
            if msg.HasField("action"):
                action, params = decode_action(self.p4map, table, msg.action, is_default=True)
                self.device.table_set_default(table.name, action.name, params)
            else:
                self.device.table_reset_default(table.name)

    def write_direct_counter(self, update_type: int, msg: p4runtime_pb2.DirectCounterEntry) -> None:
        if update_type != Update.MODIFY:
            raise P4RuntimeError.invalid_argument("direct counter entries can only be MODIFYed")
        table, key, priority = self._counted_entry(msg.table_entry)
        with device_errors():
            if msg.HasField("data"):
                self.device.direct_counter_write(table.name, key, priority, msg.data.packet_count, msg.data.byte_count)
            else:   # nothing to change, but the entry must exist
                self.device.direct_counter_read(table.name, key, priority)

    def _counted_entry(self, te: p4runtime_pb2.TableEntry):
        table = self.p4map.table(te.table_id)
        if not table.direct_counter_id:
            raise P4RuntimeError.invalid_argument(f"table '{table.name}' has no direct counter")
        if te.is_default_action:
            raise P4RuntimeError.unimplemented("direct counters of default entries are not supported")
        key, priority = decode_match(table, te.match, te.priority, self.device_kinds(table))
        return table, key, priority

    # --- reads -----------------------------------------------------------------------------------------
    def read(self, query: p4runtime_pb2.TableEntry) -> Iterator[p4runtime_pb2.Entity]:
        if query.table_id == 0:
            if query.match or query.is_default_action:
                raise P4RuntimeError.invalid_argument("a read of all tables (table_id 0) cannot filter by match")
            tables = list(self.p4map.tables)
        else:
            tables = [self.p4map.table(query.table_id)]
        for table in tables:
            yield from self._read_table(table, query)

    def _read_table(self, table: TableInfo, query: p4runtime_pb2.TableEntry) -> Iterator[p4runtime_pb2.Entity]:
        if query.is_default_action:
            if query.match:
                raise P4RuntimeError.invalid_argument(f"table '{table.name}': the default entry has no match")
            with device_errors():
                entry = self.device.table_get_default(table.name)
            msg = encode_entry(self.p4map, table, entry)
            msg.is_default_action = True
            yield p4runtime_pb2.Entity(table_entry=msg)
            return
        wanted = None
        if query.match:
            key, _ = decode_match(table, query.match, query.priority or (1 if table.needs_priority else 0),
                                  self.device_kinds(table))
            wanted = match_fingerprint(encode_match(table, key))
        action_id = query.action.action.action_id if query.action.WhichOneof("type") == "action" else 0
        with device_errors():
            entries = self.device.table_entries(table.name)
        for entry in entries:
            msg = encode_entry(self.p4map, table, entry)
            fingerprint = match_fingerprint(msg.match)
            if wanted is not None and fingerprint != wanted:
                continue
            if query.priority and msg.priority != query.priority:
                continue
            if action_id and msg.action.action.action_id != action_id:
                continue
            controller_metadata, metadata = self._opaque.get((table.id, fingerprint, msg.priority), (0, b""))
            if query.controller_metadata and controller_metadata != query.controller_metadata:
                continue
            if query.metadata and metadata != query.metadata:
                continue
            msg.controller_metadata, msg.metadata = controller_metadata, metadata
            if query.HasField("counter_data") and table.direct_counter_id:
                with device_errors():
                    packets, octets = self.device.direct_counter_read(table.name, entry.key, entry.priority)
                msg.counter_data.packet_count, msg.counter_data.byte_count = packets, octets
            if query.HasField("meter_config") and table.id in self.p4map.table_direct_meter:
                with device_errors():
                    config = self.device.direct_meter_get(table.name, entry.key, entry.priority)
                if config is not None:   # a meter at its default leaves meter_config unset (read-write symmetry)
                    encode_config(config, msg.meter_config)
            yield p4runtime_pb2.Entity(table_entry=msg)

    def read_direct_counters(self, query: p4runtime_pb2.DirectCounterEntry) -> Iterator[p4runtime_pb2.Entity]:
        te = query.table_entry
        if te.table_id == 0:
            tables = [t for t in self.p4map.tables if t.direct_counter_id]
        elif te.match or te.is_default_action:
            table, key, priority = self._counted_entry(te)
            with device_errors():
                packets, octets = self.device.direct_counter_read(table.name, key, priority)
            yield self._direct_counter_entity(table, key, priority, packets, octets)
            return
        else:
            tables = [self.p4map.table(te.table_id)]
            if not tables[0].direct_counter_id:
                raise P4RuntimeError.invalid_argument(f"table '{tables[0].name}' has no direct counter")
        for table in tables:
            with device_errors():
                entries = self.device.table_entries(table.name)
                for entry in entries:
                    packets, octets = self.device.direct_counter_read(table.name, entry.key, entry.priority)
                    yield self._direct_counter_entity(table, entry.key, entry.priority, packets, octets)

    def _direct_counter_entity(self, table: TableInfo, key, priority: int, packets: int,
                               octets: int) -> p4runtime_pb2.Entity:
        entity = p4runtime_pb2.Entity()
        entity.direct_counter_entry.table_entry.table_id = table.id
        entity.direct_counter_entry.table_entry.match.extend(encode_match(table, key))
        entity.direct_counter_entry.table_entry.priority = priority
        entity.direct_counter_entry.data.packet_count = packets
        entity.direct_counter_entry.data.byte_count = octets
        return entity
