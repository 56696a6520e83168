# Run: .venv/bin/pytest tests/softswitch/test_replication.py -q
"""Packet tests of multicast, clones, resubmit, recirculate and truncate with
tests/softswitch/p4/replication_test.p4 (BMv2 simple_switch semantics, docs/simple_switch.md of BMv2)."""

from __future__ import annotations

import struct

import pytest
from switch_helpers import device_for, ethernet, only_output

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

REP = struct.Struct(">BHHBBHBBI")
FIELDS = ("op", "mgid", "rid", "instance", "ingress_instance", "port", "preserved", "passes", "length")
NORMAL, INGRESS_CLONE, EGRESS_CLONE, RECIRC, REPLICATION, RESUBMIT = 0, 1, 2, 4, 5, 6
OP_FORWARD, OP_MULTICAST, OP_CLONE_I2E, OP_RESUBMIT, OP_RECIRCULATE = 0, 1, 2, 3, 4
OP_CLONE_I2E_FIELDS, OP_CLONE_E2E, OP_TRUNCATE, OP_DROP = 5, 6, 7, 8
CLONE_SESSION = 5
PAYLOAD = b"0123456789abcdef"


@pytest.fixture
def device():
    return device_for("replication_test")


def frame(op: int, mgid: int = 0) -> bytes:
    return ethernet(0x88B8) + REP.pack(op, mgid, 0, 0, 0, 0, 0, 0, 0) + PAYLOAD


def decode(out: bytes) -> dict[str, int]:
    assert out.endswith(PAYLOAD)
    return dict(zip(FIELDS, REP.unpack(out[14 : 14 + REP.size])))


def send(device, data: bytes, port: int = 9) -> list[tuple[int, dict[str, int]]]:
    outputs = [(p, decode(out)) for p, out in device.process_packet(port, data)]
    return sorted(outputs, key=lambda item: (item[0], item[1]["rid"]))


def test_unicast(device):
    data = frame(OP_FORWARD)
    [(port, rep)] = send(device, data)
    assert port == 1
    assert rep == {"op": 0, "mgid": 0, "rid": 0, "instance": NORMAL, "ingress_instance": NORMAL, "port": 1,
                   "preserved": 0, "passes": 1, "length": len(data)}


def test_multicast_replicas_carry_their_rid(device):
    device.mc_group_insert(10, [(2, 100), (3, 200), (2, 101)])
    outputs = send(device, frame(OP_MULTICAST, mgid=10))
    assert [(p, r["rid"], r["port"], r["instance"]) for p, r in outputs] == [
        (2, 100, 2, REPLICATION), (2, 101, 2, REPLICATION), (3, 200, 3, REPLICATION)
    ]
    device.mc_group_modify(10, [(4, 7)])
    assert [(p, r["rid"]) for p, r in send(device, frame(OP_MULTICAST, mgid=10))] == [(4, 7)]


def test_multicast_to_unknown_or_empty_group_drops(device):
    assert send(device, frame(OP_MULTICAST, mgid=11)) == []
    device.mc_group_insert(11, [])
    assert send(device, frame(OP_MULTICAST, mgid=11)) == []
    assert device.stats["drop:unknown_multicast_group"] == 1
    assert device.stats["drop:empty_multicast_group"] == 1


def test_ingress_clone_is_the_received_packet(device):
    device.clone_session_insert(CLONE_SESSION, [(7, 3)])
    outputs = send(device, frame(OP_CLONE_I2E))
    assert [p for p, _ in outputs] == [1, 7]
    original, clone = outputs[0][1], outputs[1][1]
    assert (original["passes"], original["instance"]) == (1, NORMAL)
    # The clone is re-parsed from the bytes as received: ingress changes (passes, length) are not in it.
    assert clone == {"op": OP_CLONE_I2E, "mgid": 0, "rid": 3, "instance": INGRESS_CLONE, "ingress_instance": 0,
                     "port": 7, "preserved": 0, "passes": 0, "length": 0}


def test_ingress_clone_preserving_field_list(device):
    device.clone_session_insert(CLONE_SESSION, [(7, 0), (8, 1)])
    outputs = send(device, frame(OP_CLONE_I2E_FIELDS))
    clones = [r for p, r in outputs if p in (7, 8)]
    assert [(c["preserved"], c["rid"]) for c in clones] == [(0x55, 0), (0x55, 1)]


def test_clone_without_session_still_forwards_the_original(device):
    [(port, rep)] = send(device, frame(OP_CLONE_I2E))
    assert port == 1
    assert device.stats["drop:unknown_clone_session"] == 1


def test_clone_session_truncates(device):
    device.clone_session_insert(CLONE_SESSION, [(7, 0)], packet_length_bytes=20)
    outputs = dict(device.process_packet(9, frame(OP_CLONE_I2E)))
    assert len(outputs[7]) == 20
    assert len(outputs[1]) == len(frame(OP_CLONE_I2E))


def test_egress_clone(device):
    device.clone_session_insert(CLONE_SESSION, [(6, 9)])
    outputs = send(device, frame(OP_CLONE_E2E))
    assert [p for p, _ in outputs] == [1, 6]
    original, clone = outputs[0][1], outputs[1][1]
    assert (original["instance"], original["preserved"]) == (NORMAL, 0)
    assert (clone["instance"], clone["rid"], clone["port"], clone["preserved"]) == (EGRESS_CLONE, 9, 6, 0x44)
    assert clone["passes"] == 1  # an egress clone carries the packet as it left egress


def test_resubmit_preserves_listed_metadata_only(device):
    data = frame(OP_RESUBMIT)
    [(port, rep)] = send(device, data)
    assert port == 3
    # Ingress starts over on the original bytes: passes counts only the second pass.
    assert (rep["ingress_instance"], rep["preserved"], rep["passes"], rep["length"]) == (RESUBMIT, 0x77, 1, len(data))
    assert rep["instance"] == NORMAL
    assert device.stats["resubmitted"] == 1


def test_recirculate_preserves_listed_metadata(device):
    data = frame(OP_RECIRCULATE)
    [(port, rep)] = send(device, data)
    assert port == 3
    assert (rep["ingress_instance"], rep["preserved"], rep["passes"]) == (RECIRC, 0x66, 2)
    assert rep["length"] == len(data)
    assert device.stats["recirculated"] == 1


def test_truncate(device):
    data = frame(OP_TRUNCATE)
    port, out = only_output(device.process_packet(9, data))
    assert (port, len(out)) == (1, 16)


def test_drop(device):
    assert device.process_packet(9, frame(OP_DROP)) == []
    assert device.stats["drop:ingress_mark_to_drop"] == 1


def test_pre_read_back(device):
    device.mc_group_insert(3, [(1, 1)])
    device.clone_session_insert(2, [(4, 0)], packet_length_bytes=64)
    assert device.mc_group_read(None) == {3: [(1, 1)]}
    assert device.clone_session_read(2)[2].packet_length_bytes == 64
    device.mc_group_delete(3)
    device.clone_session_delete(2)
    assert device.mc_group_read(None) == {}
