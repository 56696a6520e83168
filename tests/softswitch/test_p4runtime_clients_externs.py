# Run: .venv/bin/pytest tests/softswitch/test_p4runtime_clients_externs.py -q
"""p4runtime-shell and finsy, independent P4Runtime clients (each in a venv of its own: tests/clients/), drive the
softswitch server's value sets, meters, action profiles and digests on the construct-test programs of
tests/softswitch/p4/: each client pushes the program, programs the entity kind with its own encoders, reads it back,
and the test then checks what the client saw and what the packets do."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import pytest

from conftest_p4rt import BUILD_DIR, RawClient, running_server
from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.device import Device
from switch_helpers import ethernet, only_output
from tests.clients.venvs import FINSY, P4RUNTIME_SHELL, Client, client_or_skip
from tests.polling import wait_until

Entity = p4runtime_pb2.Entity
DEVICE_ID = 1


@pytest.fixture(scope="module")
def shell() -> Client:
    return client_or_skip(P4RUNTIME_SHELL)


@pytest.fixture(scope="module")
def finsy() -> Client:
    return client_or_skip(FINSY)


@dataclass
class Run:
    observed: dict
    device: Device    # the device the client programmed, still loaded with its state


@contextmanager
def served() -> Iterator[tuple[str, Device]]:
    device = Device()
    with running_server(device, device_id=DEVICE_ID) as server:
        yield server.bound_address, device


def run(client: Client, scenario: str, program: str) -> Run:
    """Run a client scenario against a fresh server; the client pushes tests/softswitch/p4/<program>.p4 first."""
    with served() as (address, device):
        observed = client.run(scenario, address, "--device-id", str(DEVICE_ID),
                              "--p4info", str(BUILD_DIR / f"{program}.p4info.txtpb"),
                              "--json", str(BUILD_DIR / f"{program}.json"))
        return Run(observed, device)


# --- value sets (vset_test.p4) ----------------------------------------------------------------------------
def vset_path(device: Device, ether_type: int = 0x88BB, a: int = 1, b: int = 2, c: int = 3) -> int:
    sent = ethernet(ether_type) + bytes([a]) + b.to_bytes(2, "big") + bytes([c, 0])
    return only_output(device.process_packet(1, sent))[1][-1]


def test_shell_value_sets(shell: Client) -> None:
    result = run(shell, "value-sets", "vset_test")
    assert result.observed["members"] == [[[1, "07"], [2, "0102"]], [[1, "01"], [2, "02"]]]
    assert "INVALID_ARGUMENT" in result.observed["insert_error"]
    assert vset_path(result.device, a=7, b=0x102) == 0x01 and vset_path(result.device, a=7, b=2) == 0


def test_finsy_value_sets(finsy: Client) -> None:
    result = run(finsy, "value-sets", "vset_test")
    assert result.observed["pairs"] == [{"a": 7, "b": 0x102}, {"a": 1, "b": 2}]
    assert result.observed["ether_types"] == [0x1234]
    assert result.observed["too_many"] == {"code": "UNKNOWN", "details": {"0": "RESOURCE_EXHAUSTED"}}
    assert vset_path(result.device, ether_type=0x1234, a=1, b=2) == 0x11


# --- meters (meter_test.p4) ---------------------------------------------------------------------------------
def meter_colors(device: Device, index: int = 0, key: int = 0) -> list[int]:
    sent = ethernet(0x88B8) + struct.pack(">IBBBB", index, key, 0x77, 0x77, 0x77)
    return list(only_output(device.process_packet(1, sent))[1][-3:])


def test_shell_meters(shell: Client) -> None:
    result = run(shell, "meters", "meter_test")
    assert result.observed["cells"] == {"2": [0, 1, 0, 2]}
    assert result.observed["direct"] == [["05", 1], ["06", 0]]
    assert "INVALID_ARGUMENT" in result.observed["pir_below_cir"]
    assert "INVALID_ARGUMENT" in result.observed["insert_error"]
    device = result.device
    device.freeze_clock(1)
    assert [meter_colors(device, index=2)[0] for _ in range(3)] == [0, 1, 2]
    assert [meter_colors(device, key=5)[2] for _ in range(2)] == [0, 2]   # bursts of 1: GREEN, then RED
    assert meter_colors(device, key=6)[2] == 2


def test_finsy_meters(finsy: Client) -> None:
    result = run(finsy, "meters", "meter_test")
    assert result.observed["cells"] == {"2": [0, 1, 0, 2]}
    assert result.observed["direct"] == [[5, 0], [6, 0]]
    assert result.observed["past_the_end"] == {"code": "UNKNOWN", "details": {"0": "OUT_OF_RANGE"}}
    device = result.device
    device.freeze_clock(1)
    assert [meter_colors(device, key=5)[2] for _ in range(1)] == [2]


# --- action profiles and selectors (selector_test.p4) -----------------------------------------------------
def selector_results(device: Device, key: int, flow: int = 0, port: int = 0) -> tuple[int, int]:
    """(r_prof, r_sel) of a probe."""
    out = only_output(device.process_packet(1, ethernet(0x88B9) + struct.pack(">BIHBBBBH", key, flow, port, 0, 0, 0, 0,
                                                                              0)))[1]
    return out[-6], out[-5]


def test_shell_action_profiles(shell: Client) -> None:
    result = run(shell, "action-profiles", "selector_test")
    assert result.observed["members"] == [1, 2, 3]
    assert result.observed["groups"] == [[[1, 1], [3, 2]]]
    assert result.observed["entries"] == {"group_ids": [100], "member_ids": [1]}
    assert "FAILED_PRECONDITION" in result.observed["delete_in_use"]
    assert selector_results(result.device, key=3) == (7, 0)
    assert {selector_results(result.device, key=1, flow=f)[1] for f in range(64)} == {10, 30}


def test_finsy_action_profiles(finsy: Client) -> None:
    result = run(finsy, "action-profiles", "selector_test")
    assert result.observed["members"] == 4 and result.observed["groups"] == [[[1, 1], [3, 2]]]
    assert result.observed["delete_in_use"] == {"code": "UNKNOWN", "details": {"0": "FAILED_PRECONDITION"}}
    assert (result.observed["members_after"], result.observed["groups_after"], result.observed["entries_after"]) == (
        0, 0, 0)


# --- digests (digest_test.p4) ---------------------------------------------------------------------------
def run_receiving(client: Client, scenario: str, frames: list[bytes], count: int) -> dict:
    """Run a scenario that configures digests and then waits for `count` DigestLists; once the configuration shows
    up on the server, the frames go through the device."""
    with served() as (address, device):
        result: dict = {}

        def scenario_thread() -> None:
            try:
                result["observed"] = client.run(scenario, address, "--device-id", str(DEVICE_ID),
                                                "--p4info", str(BUILD_DIR / "digest_test.p4info.txtpb"),
                                                "--json", str(BUILD_DIR / "digest_test.json"), "--count", str(count))
            except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
                result["error"] = error

        thread = threading.Thread(target=scenario_thread)
        thread.start()
        reader = RawClient(address, DEVICE_ID, election_id=None)
        try:
            def configured() -> bool:
                try:
                    return bool(reader.read(Entity(digest_entry=p4runtime_pb2.DigestEntry())))
                except grpc.RpcError:   # no pipeline pushed yet
                    return False

            wait_until(lambda: configured() or not thread.is_alive(), 60, "the client's DigestEntry")
            for frame in frames:
                device.process_packet(1, frame)
        finally:
            reader.close()
        thread.join(120)
        if "error" in result:
            raise result["error"]
        return result["observed"]


def digest_probe(learn: int, nibble: int = 5, tag: int = 7, src: int = 1) -> bytes:
    return ethernet(0x88BA, src=src) + struct.pack(">BBH", learn, nibble << 4, tag)


def test_shell_receives_and_acks_digests(shell: Client) -> None:
    frames = [digest_probe(1), digest_probe(1), digest_probe(2), digest_probe(1, nibble=9)]
    observed = run_receiving(shell, "digests", frames, count=3)
    assert observed["configs"] == [[1, 2_000_000_000]]
    assert observed["received"] == [["mac_learn_t", 1, [["01", "01", "05"]]],   # the repeat is held back
                                    ["tag_t", 1, [["07", "fd"]]],
                                    ["mac_learn_t", 2, [["01", "01", "09"]]]]


def test_finsy_receives_and_acks_digests(finsy: Client) -> None:
    frames = [digest_probe(1, src=0x0A), digest_probe(1, src=0x0B)]
    observed = run_receiving(finsy, "digests", frames, count=2)
    assert observed["configs"] == [[1, 2_000_000_000]]
    assert [[list_id, [sorted(d.values()) for d in data]] for list_id, data in observed["received"]] == [
        [1, [sorted([0x0A, 1, 5])]], [2, [sorted([0x0B, 1, 5])]]]
