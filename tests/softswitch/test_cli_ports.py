# Run: .venv/bin/pytest tests/softswitch/test_cli_ports.py -q
"""The omnireduce-switch process: UDP loopback ports, the packet loop, pcap captures, the CLI's exit codes,
readiness lines and clean shutdown on SIGTERM. Only 127.0.0.1 is used."""

from __future__ import annotations

import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from switch_helpers import ethernet, program_json

from omnireduce.softswitch.cli import SwitchConfig, main, parse_args, setup
from omnireduce.softswitch.pcap import read_pcap
from omnireduce.softswitch.ports import parse_port_spec
from tests.polling import wait_until

TIMEOUT = 5.0


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


@pytest.fixture
def reflector(tmp_path):
    """parser_test (reflects every frame with a 4-byte report) on UDP port 1, capturing pcaps."""
    config = SwitchConfig(
        json_path=program_json("parser_test"),
        ports=(parse_port_spec("1@udp:127.0.0.1:0"),),
        grpc_address=None,
        pcap_dir=tmp_path,
    )
    switch = setup(config=config)
    yield switch
    switch.stop()


def test_udp_port_answers_the_sender(reflector, tmp_path):
    client = udp_socket()
    address = reflector.loop.ports[1].bound
    frame = ethernet(0x8900) + b"ping"
    client.sendto(frame, address)
    reply, source = client.recvfrom(65535)
    assert source == address
    assert reply == bytes([0, 0, 1, 0]) + frame
    # The loop counts a frame as sent once sendto() returned, which can be after the client already has it.
    wait_until(lambda: reflector.loop.stats["tx"] == 1, TIMEOUT, "the switch to count its reply")
    assert reflector.loop.stats["rx"] == 1 and reflector.loop.stats["tx"] == 1
    reflector.stop()
    assert read_pcap(tmp_path / "port1_in.pcap") == [frame]
    assert read_pcap(tmp_path / "port1_out.pcap") == [reply]


def test_garbage_datagrams_do_not_stop_the_loop(reflector):
    client = udp_socket()
    address = reflector.loop.ports[1].bound
    for junk in (b"", b"\x01", b"\xff" * 1500):
        client.sendto(junk, address)
        assert client.recvfrom(65535)[0].endswith(junk)
    assert reflector.loop._thread.is_alive()


def test_fixed_peer_and_multicast_between_ports(tmp_path):
    sink_a, sink_b, client = udp_socket(), udp_socket(), udp_socket()
    a, b = sink_a.getsockname(), sink_b.getsockname()
    config = SwitchConfig(
        json_path=program_json("replication_test"),
        ports=(
            parse_port_spec(f"2@udp:127.0.0.1:0,{a[0]}:{a[1]}"),
            parse_port_spec(f"3@udp:127.0.0.1:0,{b[0]}:{b[1]}"),
            parse_port_spec("9@udp:127.0.0.1:0"),
        ),
        grpc_address=None,
    )
    switch = setup(config=config)
    try:
        switch.device.mc_group_insert(4, [(2, 1), (3, 2), (5, 3)])  # port 5 does not exist: counted, not sent
        frame = ethernet(0x88B8) + bytes([1, 0, 4]) + bytes(12) + b"payload"
        client.sendto(frame, switch.loop.ports[9].bound)
        assert sink_a.recvfrom(65535)[0].endswith(b"payload")
        assert sink_b.recvfrom(65535)[0].endswith(b"payload")
        deadline = time.monotonic() + TIMEOUT
        while switch.loop.stats["tx_no_such_port"] < 1 and time.monotonic() < deadline:
            select.select([], [], [], 0.01)
        assert switch.loop.stats["tx_no_such_port"] == 1
    finally:
        switch.stop()


def test_bad_command_lines_exit_2():
    for argv in ([], ["--no-p4", "x.json"], ["--no-p4", "-i", "nonsense"], ["--no-p4", "-i", "1@a", "-i", "1@b"],
                 ["--no-p4", "--device-id", "-1"], ["--no-p4", "--device-id", "one"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2


def test_unloadable_json_exits_1(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main([str(bad), "--no-grpc", "--log-level", "off"]) == 1
    assert main([str(tmp_path / "missing.json"), "--no-grpc", "--log-level", "off"]) == 1


def test_port_in_use_exits_1():
    taken = udp_socket()
    host, port = taken.getsockname()
    assert main(["--no-p4", "--no-grpc", "--log-level", "off", "-i", f"1@udp:{host}:{port}"]) == 1


def test_process_reports_readiness_and_stops_on_sigterm():
    command = [sys.executable, "-m", "omnireduce.softswitch.cli", "--no-p4", "--grpc-server-addr", "127.0.0.1:0",
               "-i", "1@udp:127.0.0.1:0", "--log-level", "info"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])
    lines_seen: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines_seen.put(line.strip()) for line in process.stdout], daemon=True).start()
    try:
        lines = []
        deadline = time.monotonic() + 30
        while not lines or lines[-1] != "omnireduce-switch: ready":
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                break
            try:
                lines.append(lines_seen.get(timeout=remaining))
            except queue.Empty:
                break
        assert lines[-1] == "omnireduce-switch: ready", (lines, process.stderr.read() if process.poll() else "")
        assert any("P4Runtime server listening on 127.0.0.1:" in line for line in lines)
        assert any(line.startswith("omnireduce-switch: port 1 listening on udp:127.0.0.1:") for line in lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "listening on" not in process.stderr.read()  # on stdout only, not logged a second time
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_peerless_udp_port_batches_frames_of_one_sender_at_a_time():
    """Frames from two senders waiting on a port without a peer come back in two batches, in order, so each
    batch's replies go to its own sender."""
    from omnireduce.softswitch.ports import PortSpec, UdpPort

    port = UdpPort(PortSpec(1, "udp", bind=("127.0.0.1", 0)))
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for sender in senders:
            sender.bind(("127.0.0.1", 0))
        senders[0].sendto(b"a1", port.bound)
        senders[0].sendto(b"a2", port.bound)
        senders[1].sendto(b"b1", port.bound)
        batches = []
        deadline = time.monotonic() + 5
        while sum(len(b) for b in batches) < 3 and time.monotonic() < deadline:
            frames = port.receive_many(64)
            if frames:
                batches.append((frames, port.peer))
        assert batches == [([b"a1", b"a2"], senders[0].getsockname()), ([b"b1"], senders[1].getsockname())]
        assert not port.holds_frame
    finally:
        port.close()
        for sender in senders:
            sender.close()


def test_start_errors_are_one_line_that_names_the_thing(tmp_path, capsys):
    from omnireduce.p4src import artifacts

    assert main(["-i", "1@nosuchif0", "--no-grpc", str(artifacts.BMV2_JSON)]) == 1
    err = capsys.readouterr().err
    assert err == ("omnireduce-switch: error: cannot open port 1 on interface nosuchif0, no such interface; give an "
                   "existing one (ip link lists them) or udp:HOST:PORT\n")  # checked before loading the pipeline
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert main([str(bad), "--no-grpc", "--log-level", "off"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"omnireduce-switch: error: cannot load {bad}, pipeline config is not JSON")
    assert "INVALID_ARGUMENT" not in err
    assert main([str(tmp_path / "missing.json"), "--no-grpc"]) == 1
    assert capsys.readouterr().err.endswith("cannot read the JSON " + str(tmp_path / "missing.json") +
                                            ", no such file; check the path\n")


def test_the_p4info_next_to_the_json_is_served():
    from omnireduce.p4src import artifacts

    config, _ = parse_args([str(artifacts.BMV2_JSON)])
    assert config.p4info_path == artifacts.P4INFO
    assert parse_args([str(artifacts.BMV2_JSON), "--p4info", "x.txtpb"])[0].p4info_path == Path("x.txtpb")


def test_help_has_exit_codes_and_the_projects_json(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text and "p4src/build/omnireduce.json" in text and "build/prog.json" not in text
