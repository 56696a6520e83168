# Run: .venv/bin/pytest tests/softswitch/test_raw_ports.py -q
"""AF_PACKET ports on a veth pair, inside a network namespace the test creates (`unshare --net`).
Needs root (CAP_NET_ADMIN/CAP_NET_RAW); skipped otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from switch_helpers import program_json

SCRIPT = textwrap.dedent(
    """
    import socket, subprocess, sys, time
    from pathlib import Path
    from omnireduce.softswitch.cli import SwitchConfig, setup
    from omnireduce.softswitch.ports import parse_port_spec
    for cmd in ("ip link add sw0 type veth peer name host0", "ip link set sw0 up", "ip link set host0 up"):
        subprocess.run(cmd.split(), check=True)
    switch = setup(config=SwitchConfig(json_path=Path(sys.argv[1]), ports=(parse_port_spec("1@sw0"),), grpc_address=None))
    host = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    host.bind(("host0", 3))
    host.settimeout(0.2)
    frame = bytes.fromhex("020000000002020000000001") + b"\\x89\\x00" + b"raw-port-test" + bytes(40)
    expected = bytes([0, 0, 1, 0]) + frame
    deadline = time.monotonic() + 10
    found = False
    while time.monotonic() < deadline and not found:
        host.send(frame)
        try:
            while True:
                data, address = host.recvfrom(65535)
                if data == expected:
                    found = True
                    break
        except socket.timeout:
            pass
    switch.stop()
    print("REFLECTED" if found else "MISSING")
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
                    reason="needs root, unshare and ip (creates a network namespace with a veth pair)")
def test_raw_port_on_veth_in_own_namespace():
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", SCRIPT, str(program_json("parser_test"))],
        capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip(f"cannot create a network namespace here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("REFLECTED"), result.stdout + result.stderr
