"""P4Runtime MeterEntry and DirectMeterEntry writes and reads, and the meter config of TableEntry, on the Device.

Per the spec ("MeterEntry & DirectMeterEntry", "Direct Resources"):
- both are MODIFY-only (INSERT and DELETE are INVALID_ARGUMENT); an unset `config` resets the meter to its default
  (every packet GREEN), an unset MeterEntry `index` writes every cell; a negative index is INVALID_ARGUMENT, one past
  the end OUT_OF_RANGE;
- reads: meter_id 0 reads every indirect meter, an unset index every cell, and a DirectMeterEntry with table_id 0
  every direct meter's entries (simple_switch_grpc answers UNIMPLEMENTED there); a cell at its default has no
  `config` in the answer; the config read is the one written;
- a DirectMeterEntry names its table entry by match (and priority), NOT_FOUND when there is none; BMv2 has no direct
  meter on a table's default entry (it runs meters on hits only), so that is UNIMPLEMENTED, as in simple_switch_grpc.

MeterConfig values are checked as PI checks them: negative is INVALID_ARGUMENT, except all four -1, which older
clients send for "default"; pir below cir is INVALID_ARGUMENT (BMv2 refuses it with an error). `eburst` belongs to
single-rate meters (v1model's are two-rate): non-zero is INVALID_ARGUMENT. Per-color counters (`counter_data`,
MeterCounterData) are not kept by BMv2 or here: writing them is UNIMPLEMENTED, reads leave them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.meters import MeterConfig
from omnireduce.softswitch.p4runtime.entry_codec import decode_match, encode_match
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError, device_errors
from omnireduce.softswitch.p4runtime.p4info_map import MeterInfo, P4InfoMap, TableInfo

if TYPE_CHECKING:   # only for annotations: the Device module needs nothing from the server
    from omnireduce.softswitch.device import Device

Update = p4runtime_pb2.Update


def decode_config(msg: p4runtime_pb2.MeterConfig, what: str) -> MeterConfig | None:
    """The Device form of a MeterConfig (None: the default config)."""
    values = (msg.cir, msg.cburst, msg.pir, msg.pburst)
    if values == (-1, -1, -1, -1):
        return None
    for name, value in zip(("cir", "cburst", "pir", "pburst"), values):
        if value < 0:
            raise P4RuntimeError.invalid_argument(f"{what}: negative {name} {value}")
    if msg.eburst:
        raise P4RuntimeError.invalid_argument(
            f"{what}: eburst is for single-rate meters; v1model meters are two-rate (cir/cburst, pir/pburst)")
    if msg.pir < msg.cir:
        raise P4RuntimeError.invalid_argument(f"{what}: pir {msg.pir} is below cir {msg.cir}")
    return MeterConfig(msg.cir, msg.cburst, msg.pir, msg.pburst)


def encode_config(config: MeterConfig, msg: p4runtime_pb2.MeterConfig) -> None:
    msg.cir, msg.cburst, msg.pir, msg.pburst = config.cir, config.cburst, config.pir, config.pburst


def _check_no_counter_data(msg, what: str) -> None:
    if msg.HasField("counter_data"):
        raise P4RuntimeError.unimplemented(f"{what}: per-color meter counters (counter_data) are not supported")


class MeterOps:
    """Indirect and direct meters of one Device under one P4Info."""

    def __init__(self, device: Device, p4map: P4InfoMap, device_kinds) -> None:
        self.device = device
        self.p4map = p4map
        self._device_kinds = device_kinds   # TableOps.device_kinds: a table's key kinds as the Device has them

    # --- MeterEntry ------------------------------------------------------------------------------------
    def _cells(self, meter: MeterInfo, index: p4runtime_pb2.Index | None) -> range:
        what = f"meter '{meter.name}'"
        if index is None:
            return range(meter.size)
        if index.index < 0:
            raise P4RuntimeError.invalid_argument(f"{what}: index {index.index} is negative")
        if index.index >= meter.size:
            raise P4RuntimeError.out_of_range(f"{what}: index {index.index} is past its {meter.size} cells")
        return range(index.index, index.index + 1)

    def write_meter(self, update_type: int, msg: p4runtime_pb2.MeterEntry) -> None:
        if update_type != Update.MODIFY:
            raise P4RuntimeError.invalid_argument("meter entries can only be MODIFYed")
        if msg.meter_id == 0:
            raise P4RuntimeError.invalid_argument("meter_id 0 is only a wildcard for reads")
        meter = self.p4map.meters.get(msg.meter_id)
        what = f"meter '{meter.name}'"
        _check_no_counter_data(msg, what)
        cells = self._cells(meter, msg.index if msg.HasField("index") else None)
        config = decode_config(msg.config, what) if msg.HasField("config") else None
        with device_errors():
            for index in cells:
                self.device.meter_set(meter.name, index, config)

    def read_meters(self, query: p4runtime_pb2.MeterEntry) -> Iterator[p4runtime_pb2.Entity]:
        meters = list(self.p4map.meters) if query.meter_id == 0 else [self.p4map.meters.get(query.meter_id)]
        index = query.index if query.HasField("index") and query.meter_id else None
        for meter in meters:
            for cell in self._cells(meter, index):
                with device_errors():
                    config = self.device.meter_get(meter.name, cell)
                entity = p4runtime_pb2.Entity()
                entity.meter_entry.meter_id = meter.id
                entity.meter_entry.index.index = cell
                if config is not None:
                    encode_config(config, entity.meter_entry.config)
                yield entity

    # --- DirectMeterEntry ------------------------------------------------------------------------------
    def _metered_table(self, table_id: int) -> TableInfo:
        table = self.p4map.table(table_id)
        if table.id not in self.p4map.table_direct_meter:
            raise P4RuntimeError.invalid_argument(f"table '{table.name}' has no direct meter")
        return table

    def _entry_key(self, te: p4runtime_pb2.TableEntry):
        table = self._metered_table(te.table_id)
        if te.is_default_action:
            raise P4RuntimeError.unimplemented(
                f"table '{table.name}': BMv2 runs direct meters on hits only; the default entry has none")
        key, priority = decode_match(table, te.match, te.priority, self._device_kinds(table))
        return table, key, priority

    def write_direct_meter(self, update_type: int, msg: p4runtime_pb2.DirectMeterEntry) -> None:
        if update_type != Update.MODIFY:
            raise P4RuntimeError.invalid_argument("direct meter entries can only be MODIFYed")
        if not msg.HasField("table_entry"):
            raise P4RuntimeError.invalid_argument("a DirectMeterEntry needs its table_entry")
        table, key, priority = self._entry_key(msg.table_entry)
        _check_no_counter_data(msg, f"direct meter of table '{table.name}'")
        config = decode_config(msg.config, f"direct meter of table '{table.name}'") if msg.HasField("config") else None
        with device_errors():
            self.device.direct_meter_set(table.name, key, priority, config)

    def read_direct_meters(self, query: p4runtime_pb2.DirectMeterEntry) -> Iterator[p4runtime_pb2.Entity]:
        te = query.table_entry
        if te.table_id and (te.match or te.is_default_action):
            table, key, priority = self._entry_key(te)
            with device_errors():
                config = self.device.direct_meter_get(table.name, key, priority)
            yield self._direct_entity(table, key, priority, config)
            return
        tables = ([self.p4map.table(t) for t in self.p4map.table_direct_meter] if te.table_id == 0
                  else [self._metered_table(te.table_id)])
        for table in tables:
            with device_errors():
                for entry in self.device.table_entries(table.name):
                    config = self.device.direct_meter_get(table.name, entry.key, entry.priority)
                    yield self._direct_entity(table, entry.key, entry.priority, config)

    @staticmethod
    def _direct_entity(table: TableInfo, key, priority: int, config: MeterConfig | None) -> p4runtime_pb2.Entity:
        entity = p4runtime_pb2.Entity()
        entry = entity.direct_meter_entry
        entry.table_entry.table_id = table.id
        entry.table_entry.match.extend(encode_match(table, key))
        entry.table_entry.priority = priority
        if config is not None:
            encode_config(config, entry.config)
        return entity
