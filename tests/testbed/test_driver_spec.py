# Run: /work/main/.venv/bin/pytest tests/testbed/test_driver_spec.py -q
"""The contract between the venv side (mininet_run.build_spec) and the Mininet driver (star_driver.check_spec).

star_driver imports Mininet only inside its functions, so its spec code runs here without Mininet or root.
"""

from __future__ import annotations

import json

import pytest

from omnireduce.testbed import star_driver
from omnireduce.testbed.layout import RunLayout
from omnireduce.softswitch.faults import ImpairmentPlan
from omnireduce.testbed.mininet_run import build_spec, driver_command, netem_args, unique_prefix
from omnireduce.testbed.model import ImpairSite, NetKind, TestbedConfig
from omnireduce.testbed.plan import plan_network


def test_venv_spec_satisfies_the_driver(tmp_path):
    config = TestbedConfig(workers=3, jobs=2, net=NetKind.MININET)
    layout = RunLayout(tmp_path).create()
    spec = build_spec(config, plan_network(config), layout, grpc_port=50123, name_prefix="t0a1b")
    spec = json.loads(json.dumps(spec))  # what the driver reads
    star_driver.check_spec(spec)
    assert len(spec["agents"]) == 6 and {agent["host"] for agent in spec["agents"]} == {f"h{p}" for p in range(1, 7)}
    agent = spec["agents"][4]
    assert agent["title"] == "worker 1 of job 1"
    assert "--transport" in agent["argv"] and agent["argv"][agent["argv"].index("--transport") + 1] == "udp"
    assert agent["argv"][agent["argv"].index("--bind") + 1] == "10.0.0.5:20306"
    # Interface names must fit Linux's 15 characters.
    for host in spec["hosts"]:
        assert len(star_driver.node_name(spec, host["name"]) + "-eth0") <= 15
    assert len(star_driver.switch_name(spec) + "-eth6") <= 15
    argv = star_driver.switch_argv(spec["switch"], [(2, "t0a1bs1-eth2"), (1, "t0a1bs1-eth1")])
    assert spec["switch"]["argv_suffix"] == ["--grpc-server-addr", "127.0.0.1:50123"]
    assert argv == (spec["switch"]["argv_prefix"] + ["-i", "1@t0a1bs1-eth1", "-i", "2@t0a1bs1-eth2"]
                    + spec["switch"]["argv_suffix"])


def test_impairments_become_netem_on_each_side_of_each_link(tmp_path):
    config = TestbedConfig(workers=2, net=NetKind.MININET, seed=3, loss=0.01,
                           impairments=ImpairmentPlan.parse(["2/out:delay=5ms,jitter=1ms,duplicate=0.5%",
                                                             "1/in:reorder=10%"]))
    spec = build_spec(config, plan_network(config), RunLayout(tmp_path).create(), 50000, "t0a1b")
    spec = json.loads(json.dumps(spec))
    star_driver.check_spec(spec)
    by_link = {(entry["port"], entry["side"]): entry for entry in spec["netem"]}
    assert by_link[1, "host"]["args"] == ["delay", "20ms", "loss", "1%", "reorder", "10%"]  # reordering needs a delay
    assert by_link[1, "switch"]["args"] == ["loss", "1%"]
    assert by_link[2, "host"]["args"] == ["loss", "1%"]
    assert by_link[2, "switch"]["args"] == ["delay", "5ms", "1ms", "loss", "1%", "duplicate", "0.5%"]
    assert len({entry["seed"] for entry in spec["netem"]}) == 4
    assert star_driver.netem_command("t0a1bh1-eth0", by_link[1, "host"], seeded=False) == (
        "tc qdisc replace dev t0a1bh1-eth0 root netem delay 20ms loss 1% reorder 10%")
    assert star_driver.netem_command("x", by_link[1, "host"], seeded=True).endswith(f" seed {by_link[1, 'host']['seed']}")
    # The switch's argv is untouched: the links impair.
    assert spec["switch"]["argv_suffix"] == ["--grpc-server-addr", "127.0.0.1:50000"]


def test_impairing_in_the_softswitch_on_mininet_goes_on_its_command_line(tmp_path):
    config = TestbedConfig(workers=2, net=NetKind.MININET, seed=4, impair_at=ImpairSite.SWITCH,
                           impairments=ImpairmentPlan.parse(["drop=0.02"]))
    spec = build_spec(config, plan_network(config), RunLayout(tmp_path).create(), 50000, "t0a1b")
    assert spec["netem"] == []
    assert spec["switch"]["argv_suffix"] == ["--grpc-server-addr", "127.0.0.1:50000", "--impair", "drop=0.02",
                                             "--impair-seed", "4"]
    assert netem_args(ImpairmentPlan().for_link(1, "in")) == []


def test_driver_runs_under_system_python_without_our_folder_on_its_path(tmp_path):
    command = driver_command(tmp_path / "spec.json")
    assert command[:2] == ("/usr/bin/python3", "-P")
    assert command[2].endswith("mininet/star_driver.py")


@pytest.mark.parametrize("change,needle", [
    (lambda spec: spec.pop("hosts"), "lacks 'hosts'"),
    (lambda spec: spec.update(name_prefix="Bad-Prefix"), "name_prefix"),
    (lambda spec: spec["hosts"].append(dict(spec["hosts"][0])), "duplicate"),
    (lambda spec: spec["agents"].append({"name": "x", "host": "h99", "argv": ["true"]}), "unknown host"),
    (lambda spec: spec["switch"].update(kind="ovs"), "switch kind"),
])
def test_driver_refuses_bad_specs(tmp_path, change, needle):
    config = TestbedConfig(workers=2, net=NetKind.MININET)
    spec = build_spec(config, plan_network(config), RunLayout(tmp_path).create(), 50000, unique_prefix())
    change(spec)
    with pytest.raises(ValueError, match=needle):
        star_driver.check_spec(spec)


def test_unique_prefixes_are_short_lowercase_and_differ():
    prefixes = {unique_prefix() for _ in range(20)}
    assert len(prefixes) > 1
    assert all(len(prefix) == 5 and prefix.isalnum() and prefix.islower() for prefix in prefixes)


def test_agents_in_mininet_hosts_wait_at_the_start_barrier_when_given_one(tmp_path):
    config = TestbedConfig(workers=2, net=NetKind.MININET)
    layout = RunLayout(tmp_path).create()
    plan = plan_network(config)
    spec = build_spec(config, plan, layout, 50000, "t0a1b", barrier=tmp_path / "barrier")
    for agent in spec["agents"]:
        assert agent["argv"][agent["argv"].index("--start-barrier") + 1] == str(tmp_path / "barrier")
    spec = build_spec(config, plan, layout, 50000, "t0a1b")
    assert all("--start-barrier" not in agent["argv"] for agent in spec["agents"])
