# Run: .venv/bin/pytest tests/softswitch/test_shm_ports.py -q
"""Shared-memory ports of the softswitch (`-i N@shm:PATH`): frames through the packet loop on both pipelines (the
native one takes the rings' arrays without Python objects, the Python one the per-frame path), with captures and
impairments (drops and delays, on the per-frame path), multicast between ring and UDP ports, bursts in order, the
CLI's port lines."""

from __future__ import annotations

import socket
import time

import pytest
from switch_helpers import ethernet, program_json

from omnireduce.shm import FROM_SWITCH, TO_SWITCH, RingFile, RingReader, unavailable_reason
from omnireduce.softswitch.cli import SwitchConfig, main, setup
from omnireduce.softswitch.faults import ImpairmentPlan
from omnireduce.softswitch.pcap import read_pcap
from omnireduce.softswitch.ports import parse_port_spec
from tests.polling import wait_until

pytestmark = [pytest.mark.skipif(unavailable_reason() is not None, reason=f"no ring module: {unavailable_reason()}"),
              pytest.mark.usefixtures("backend")]

TIMEOUT = 10.0


def receive(reader: RingReader, count: int, timeout: float = TIMEOUT) -> list[bytes]:
    """`count` frames from `reader`, waiting on its bell; TimeoutError after `timeout` seconds."""
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        got = reader.pop_frames(64)
        if got:
            frames += got
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{len(frames)} of {count} frames within {timeout:g} s")
        reader.wait(min(remaining, 0.5))
    return frames


@pytest.fixture
def reflector(tmp_path, backend):
    """parser_test (reflects every frame with a 4-byte report) on ring port 1."""
    switch = setup(config=SwitchConfig(json_path=program_json("parser_test"), backend=backend,
                                       ports=(parse_port_spec(f"1@shm:{tmp_path / 'port1'}"),), grpc_address=None))
    agent = RingFile.open(tmp_path / "port1")
    yield switch, agent.writer(TO_SWITCH), agent.reader(FROM_SWITCH)
    agent.close()
    switch.stop()


def test_a_ring_port_reflects_frames(reflector, backend):
    switch, to_switch, from_switch = reflector
    frame = ethernet(0x8900) + b"ping"
    assert to_switch.push([frame]) == 1
    assert receive(from_switch, 1) == [bytes([0, 0, 1, 0]) + frame]
    wait_until(lambda: switch.loop.stats["tx"] == 1, TIMEOUT, "the switch to count its reply")
    assert switch.loop.stats["rx"] == 1
    assert switch.device.backend == backend


def test_a_burst_comes_back_whole_and_in_order(reflector):
    _switch, to_switch, from_switch = reflector
    frames = [ethernet(0x8900) + i.to_bytes(4, "big") * (1 + i % 50) for i in range(2000)]
    for start in range(0, len(frames), 100):  # the ring holds a MiB: batches of 100 keep it far from full
        assert to_switch.push(frames[start:start + 100]) == 100
    assert receive(from_switch, len(frames)) == [bytes([0, 0, 1, 0]) + frame for frame in frames]


def test_garbage_frames_do_not_stop_the_loop(reflector):
    switch, to_switch, from_switch = reflector
    for junk in (b"", b"\x01", b"\xff" * 1500):
        to_switch.push([junk])
        assert receive(from_switch, 1)[0].endswith(junk)
    assert switch.loop._thread.is_alive()


def test_captures_see_the_frames_of_ring_ports(tmp_path, backend):
    switch = setup(config=SwitchConfig(json_path=program_json("parser_test"), grpc_address=None, backend=backend,
                                       ports=(parse_port_spec(f"1@shm:{tmp_path / 'port1'}"),), pcap_dir=tmp_path))
    with RingFile.open(tmp_path / "port1") as agent:
        frame = ethernet(0x8900) + b"pcap"
        agent.writer(TO_SWITCH).push([frame])
        reply = receive(agent.reader(FROM_SWITCH), 1)[0]
        wait_until(lambda: switch.loop.stats["tx"] == 1, TIMEOUT, "the switch to count its reply")
    switch.stop()
    assert read_pcap(tmp_path / "port1_in.pcap") == [frame]
    assert read_pcap(tmp_path / "port1_out.pcap") == [reply]


def test_impairments_drop_frames_of_ring_ports_too(tmp_path, backend):
    switch = setup(config=SwitchConfig(json_path=program_json("parser_test"), grpc_address=None,
                                       impairments=ImpairmentPlan.parse(["drop=0.5"]), impair_seed=3,
                                       backend=backend,
                                       ports=(parse_port_spec(f"1@shm:{tmp_path / 'port1'}"),)))
    try:
        with RingFile.open(tmp_path / "port1") as agent:
            agent.writer(TO_SWITCH).push([ethernet(0x8900) + bytes([i]) for i in range(200)])
            wait_until(lambda: switch.loop.stats["rx"] == 200, TIMEOUT, "the switch to take every frame")
            device = switch.loop.device
            wait_until(lambda: switch.loop.stats["tx"] == 200 - device.injected_total("drop"), TIMEOUT,
                       "the switch to send what it did not drop")
            assert 0 < device.injected_total("drop", "in") and 0 < device.injected_total("drop", "out")
            assert device.injected_total("drop") < 200
            assert len(receive(agent.reader(FROM_SWITCH), switch.loop.stats["tx"])) == switch.loop.stats["tx"]
    finally:
        switch.stop()


def test_delayed_frames_of_ring_ports_are_released_when_due(tmp_path, backend):
    # The impaired device holds every frame 50 ms; the loop, with only ring ports, must wake to release them.
    switch = setup(config=SwitchConfig(json_path=program_json("parser_test"), grpc_address=None,
                                       impairments=ImpairmentPlan.parse(["1/in:delay=50ms"]), backend=backend,
                                       ports=(parse_port_spec(f"1@shm:{tmp_path / 'port1'}"),)))
    try:
        with RingFile.open(tmp_path / "port1") as agent:
            frames = [ethernet(0x8900) + bytes([i]) for i in range(20)]
            started = time.monotonic()
            agent.writer(TO_SWITCH).push(frames)
            replies = receive(agent.reader(FROM_SWITCH), len(frames))
            assert time.monotonic() - started >= 0.05
            assert len(replies) == len(frames)
            assert switch.loop.device.injected_total("delay", "in") == len(frames)
    finally:
        switch.stop()


def test_multicast_between_ring_and_udp_ports(tmp_path, backend):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(TIMEOUT)
    address = sink.getsockname()
    config = SwitchConfig(
        json_path=program_json("replication_test"), grpc_address=None, backend=backend,
        ports=(parse_port_spec(f"2@shm:{tmp_path / 'port2'}"),
               parse_port_spec(f"3@udp:127.0.0.1:0,{address[0]}:{address[1]}"),
               parse_port_spec(f"9@shm:{tmp_path / 'port9'}")))
    switch = setup(config=config)
    try:
        switch.device.mc_group_insert(4, [(2, 1), (3, 2), (5, 3)])  # port 5 does not exist: counted, not sent
        with RingFile.open(tmp_path / "port2") as two, RingFile.open(tmp_path / "port9") as nine:
            frame = ethernet(0x88B8) + bytes([1, 0, 4]) + bytes(12) + b"payload"
            nine.writer(TO_SWITCH).push([frame])
            assert receive(two.reader(FROM_SWITCH), 1)[0].endswith(b"payload")
            assert sink.recvfrom(65535)[0].endswith(b"payload")
            wait_until(lambda: switch.loop.stats["tx_no_such_port"] == 1, TIMEOUT, "the missing port to be counted")
            assert switch.loop.stats["tx"] == 2
            assert nine.reader(FROM_SWITCH).pop_frames(4) == []
    finally:
        switch.stop()
        sink.close()


def test_the_switch_makes_and_removes_its_ring_files_and_says_where_they_are(tmp_path, capsys):
    switch = setup(config=SwitchConfig(json_path=program_json("parser_test"), grpc_address=None,
                                       ports=(parse_port_spec(f"1@shm:{tmp_path / 'port1'}"),)))
    assert switch.listening == [f"port 1 listening on shm:{tmp_path / 'port1'}"]
    assert (tmp_path / "port1").is_file()
    switch.stop()
    assert list(tmp_path.iterdir()) == []


def test_a_ring_port_in_a_missing_folder_is_a_start_error(tmp_path, capsys):
    assert main(["--no-p4", "--no-grpc", "-i", f"1@shm:{tmp_path / 'nowhere' / 'port1'}"]) == 1
    assert capsys.readouterr().err == (
        f"omnireduce-switch: error: cannot open port 1 at shm:{tmp_path / 'nowhere' / 'port1'}, the folder "
        f"{tmp_path / 'nowhere'} does not exist; create it (e.g. under /dev/shm)\n")


def test_port_specs_of_rings():
    spec = parse_port_spec("4@shm:/dev/shm/run/port4")
    assert (spec.number, spec.kind, str(spec.path)) == (4, "shm", "/dev/shm/run/port4")
    assert spec.describe() == "shm:/dev/shm/run/port4"
    with pytest.raises(ValueError, match="N@shm:PATH"):
        parse_port_spec("4@shm:")
