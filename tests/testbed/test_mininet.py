# Run (as root, with Mininet installed): /work/main/.venv/bin/pytest tests/testbed/test_mininet.py -q -m mininet
"""Mininet runs: the star driver alone (hosts around a Linux bridge), and a whole run on the softswitch.
Each checks that no process, interface or namespace of the run is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnireduce.testbed import Fault, FaultKind, NetKind, SwitchKind, TestbedConfig, run_testbed
from omnireduce.testbed.layout import RunLayout
from omnireduce.softswitch.faults import ImpairmentPlan
from omnireduce.testbed.mininet_run import build_spec, driver_command, kill_leftovers, netem_unavailable, unique_prefix
from omnireduce.testbed.model import ImpairSite
from omnireduce.testbed.plan import plan_network
from omnireduce.testbed.switches import bmv2_binary

from .conftest import needs_mininet, survivors

pytestmark = [pytest.mark.mininet, needs_mininet]

ECHO_SERVER = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{ip}', 9000)); "
               "s.settimeout(20); data, peer = s.recvfrom(100); s.sendto(data, peer)")
ECHO_CLIENT = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)\n"
               "for _ in range(100):\n    s.sendto(b'hi', ('{ip}', 9000))\n"
               "    try:\n        print(s.recvfrom(100)[0]); break\n    except socket.timeout:\n        pass\n"
               "else:\n    raise SystemExit('no echo')")


def interfaces_named(prefix: str) -> list[str]:
    return [name for name in os.listdir("/sys/class/net") if name.startswith(prefix)]


def test_driver_builds_a_star_and_leaves_nothing_behind(tmp_path):
    """Hosts reach each other through the star (a Linux bridge stands in for the switch) with static ARP only."""
    config = TestbedConfig(workers=2, net=NetKind.MININET)
    plan = plan_network(config)
    layout = RunLayout(tmp_path).create()
    prefix = unique_prefix()
    spec = build_spec(config, plan, layout, grpc_port=1, name_prefix=prefix)
    first, second = plan.workers
    spec["switch"] = {"kind": "linux-bridge"}
    spec["setup"], spec["after"] = [], []
    spec["agents"] = [
        {"name": "server", "host": second.label, "argv": ["/usr/bin/python3", "-c", ECHO_SERVER.format(ip=second.ip)]},
        {"name": "client", "host": first.label, "argv": ["/usr/bin/python3", "-c", ECHO_CLIENT.format(ip=second.ip)]},
    ]
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    result = subprocess.run(driver_command(spec_path), capture_output=True, text=True, timeout=120)
    report = json.loads(Path(spec["report"]).read_text())
    assert result.returncode == 0 and report["ok"], (report, result.stderr)
    assert (layout.logs / "client.stdout").read_text().strip() == "b'hi'"
    assert interfaces_named(prefix) == []
    assert kill_leftovers(Path(spec["pid_file"])) == []


def test_driver_reports_a_failing_agent(tmp_path):
    config = TestbedConfig(workers=1, net=NetKind.MININET)
    plan = plan_network(config)
    layout = RunLayout(tmp_path).create()
    spec = build_spec(config, plan, layout, grpc_port=1, name_prefix=unique_prefix())
    spec["switch"] = {"kind": "linux-bridge"}
    spec["setup"], spec["after"] = [], []
    spec["agents"] = [{"name": "bad", "title": "worker 0 of job 0", "host": plan.workers[0].label,
                       "argv": [sys.executable, "-c", "import sys; sys.exit('broken input')"]}]
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    result = subprocess.run(driver_command(spec_path), capture_output=True, text=True, timeout=120)
    report = json.loads(Path(spec["report"]).read_text())
    assert result.returncode == 1
    assert report["failure"] == "worker 0 of job 0 exited with code 1: broken input"
    assert interfaces_named(spec["name_prefix"]) == []


def test_softswitch_run_on_mininet(tmp_path):
    report = run_testbed(TestbedConfig(workers=3, net=NetKind.MININET, size=16384, density=0.05, slots=8,
                                       timeout=120, keep_logs=tmp_path))
    assert report.ok, report.failure
    job = report.jobs[0]
    assert job.counters.get("results", 0) == job.expected.results
    assert survivors(tmp_path) == []
    spec = json.loads((tmp_path / "driver-spec.json").read_text())
    assert interfaces_named(spec["name_prefix"]) == []


IMPAIRMENTS = ImpairmentPlan.parse(["drop=2%", "duplicate=2%", "1/out:reorder=10%", "2/in:delay=2ms,jitter=1ms"])


def impaired_run(tmp_path, impair_at: ImpairSite):
    report = run_testbed(TestbedConfig(workers=3, net=NetKind.MININET, size=16384, density=0.1, slots=8,
                                       impairments=IMPAIRMENTS, impair_at=impair_at, timeout=120, keep_logs=tmp_path))
    assert report.ok, report.failure  # every result verified against numpy despite the faults
    assert sum(report.drops.values()) + report.jobs[0].counters.get("replays", 0) > 0  # the faults did show
    assert survivors(tmp_path) == []
    spec = json.loads((tmp_path / "driver-spec.json").read_text())
    assert interfaces_named(spec["name_prefix"]) == []
    return spec


def test_impairments_in_the_softswitch_on_mininet(tmp_path):
    spec = impaired_run(tmp_path, ImpairSite.SWITCH)
    assert "--impair" in spec["switch"]["argv_suffix"] and spec["netem"] == []


_NETEM_PROBLEM = netem_unavailable() if os.geteuid() == 0 else "needs root"


@pytest.mark.skipif(_NETEM_PROBLEM is not None, reason=f"netem on Mininet links: {_NETEM_PROBLEM}")
def test_impairments_on_the_links_with_netem(tmp_path):
    spec = impaired_run(tmp_path, ImpairSite.LINKS)
    assert len(spec["netem"]) == 6 and "--impair" not in spec["switch"]["argv_suffix"]


@pytest.mark.skipif(_NETEM_PROBLEM is None, reason="this kernel has netem: the missing-netem path cannot be seen")
def test_a_kernel_without_netem_fails_the_driver_clearly_and_leaves_nothing(tmp_path):
    config = TestbedConfig(workers=2, net=NetKind.MININET, impairments=ImpairmentPlan.parse(["drop=1%"]))
    spec = build_spec(config, plan_network(config), RunLayout(tmp_path).create(), 1, unique_prefix())
    spec["switch"] = {"kind": "linux-bridge"}
    spec["setup"], spec["after"], spec["agents"] = [], [], []
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    result = subprocess.run(driver_command(spec_path), capture_output=True, text=True, timeout=120)
    report = json.loads(Path(spec["report"]).read_text())
    assert result.returncode == 1 and report["phase"] == "netem"
    assert "root netem loss 1%: Error: Specified qdisc kind is unknown." in report["failure"]
    assert "impair in the softswitch instead (--impair-at switch)" in report["failure"]
    assert interfaces_named(spec["name_prefix"]) == []


def test_a_killed_switch_on_mininet_is_reported_and_cleaned_up(tmp_path):
    report = run_testbed(TestbedConfig(workers=2, net=NetKind.MININET, size=1_000_000, density=0.5,
                                       fault=Fault(FaultKind.KILL_SWITCH, after_s=0.3), timeout=60,
                                       keep_logs=tmp_path))
    assert not report.ok
    assert report.failure.startswith("switch process died (SIGKILL, exit -9)"), report.failure
    assert survivors(tmp_path) == []
    spec = json.loads((tmp_path / "driver-spec.json").read_text())
    assert interfaces_named(spec["name_prefix"]) == []


@pytest.mark.bmv2
@pytest.mark.skipif(bmv2_binary() is None, reason="BMv2 test: simple_switch_grpc is not on PATH")
def test_bmv2_run_on_mininet(tmp_path):
    report = run_testbed(TestbedConfig(workers=3, net=NetKind.MININET, switch=SwitchKind.BMV2, size=16384,
                                       density=0.05, slots=8, dtype="int32", timeout=120, keep_logs=tmp_path))
    assert report.ok, report.failure
    job = report.jobs[0]
    assert job.counters.get("results", 0) == job.expected.results
    assert job.measured.from_switch_packets == job.expected.from_switch_packets + job.counters.get("replays", 0)
    assert survivors(tmp_path) == []
