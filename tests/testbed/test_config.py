# Run: /work/main/.venv/bin/pytest tests/testbed/test_config.py -q
"""Configuration checks, the network plan, and the CLI's handling of bad arguments."""

from __future__ import annotations

import pytest

from omnireduce.controller.model import validate_jobs_together
from omnireduce.p4src import constants
from omnireduce.testbed import ConfigError, Fault, FaultKind, NetKind, SwitchKind, TestbedConfig, run_testbed
from omnireduce.testbed.cli import EXIT_USAGE, main
from omnireduce.softswitch.faults import ImpairmentPlan, parse_rule
from omnireduce.testbed.model import ImpairSite, auto_slots
from omnireduce.testbed.plan import plan_network
from omnireduce.testbed.provision import controller_jobs, plan_from_json, plan_to_json


def test_default_config_is_valid():
    assert TestbedConfig().problems() == []
    # No fixed limit by default: a run ends when it is done or stops progressing (the agents' stall limits).
    assert TestbedConfig().timeout is None


@pytest.mark.parametrize("config,needle", [
    (TestbedConfig(workers=constants.MAX_WORKERS + 1), "MAX_WORKERS"),
    (TestbedConfig(jobs=3, slots=200), "SLOT_COUNT"),
    (TestbedConfig(density=2.0), "--density"),
    (TestbedConfig(dtype="float16"), "--dtype"),
    (TestbedConfig(switch=SwitchKind.BMV2, net=NetKind.LOOPBACK), "--net mininet"),
    (TestbedConfig(jobs=10, workers=30), "253"),
    (TestbedConfig(dtype="int32", fault=Fault(FaultKind.NAN_INPUT)), "float32"),
    (TestbedConfig(timeout=0), "--timeout"),
    (TestbedConfig(pipeline="fast"), "--pipeline must be one of auto, native, python"),
    (TestbedConfig(pipeline="python", net=NetKind.MININET, switch=SwitchKind.BMV2), "BMv2 runs its own"),
    (TestbedConfig(loss=1.0), "--loss"),
    (TestbedConfig(impairments=ImpairmentPlan.parse(["drop=0.1"]), impair_at=ImpairSite.LINKS), "--net mininet"),
    (TestbedConfig(loss=0.01, net=NetKind.MININET, switch=SwitchKind.BMV2, impair_at=ImpairSite.SWITCH),
     "BMv2 has none"),
    (TestbedConfig(workers=2, impairments=ImpairmentPlan.parse(["3:drop=0.1"])), "which no worker uses"),
    (TestbedConfig(impairments=ImpairmentPlan((parse_rule("out:delay=1ms"), parse_rule("2:jitter=2ms")))),
     "must not exceed the delay"),
])
def test_bad_configs_name_their_problem(config, needle):
    problems = config.problems()
    assert any(needle in problem for problem in problems), problems
    with pytest.raises(ConfigError, match=needle.replace("-", r"\-")):
        run_testbed(config)


def test_impairments_act_in_the_switch_on_loopback_and_on_the_links_on_mininet():
    assert TestbedConfig().impair_at is ImpairSite.SWITCH
    assert TestbedConfig(net=NetKind.MININET).impair_at is ImpairSite.LINKS
    # --loss is a first rule drop=P, under the --impair rules.
    config = TestbedConfig(loss=0.05, impairments=ImpairmentPlan.parse(["2/in:drop=0", "reorder=0.1"]))
    assert config.impairment_plan().describe() == ["drop=0.05", "2/in:drop=0", "reorder=0.1"]
    assert config.impairment_plan().for_link(2, "in").drop == 0 and config.problems() == []


def test_fault_parsing():
    assert Fault.parse("kill-switch@1.5") == Fault(FaultKind.KILL_SWITCH, after_s=1.5)
    assert Fault.parse("nan-input@2") == Fault(FaultKind.NAN_INPUT, worker=2)
    assert Fault.parse("kill-switch").kind is FaultKind.KILL_SWITCH
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.parse("explode")
    with pytest.raises(ValueError, match="not a number"):
        Fault.parse("nan-input@x")


def test_plan_gives_disjoint_slots_ports_and_addresses():
    plan = plan_network(TestbedConfig(workers=5, jobs=3, slots=7))
    workers = plan.workers
    assert len({worker.port for worker in workers}) == 15
    assert len({worker.ip for worker in workers}) == 15 and plan.aggregator_ip not in {w.ip for w in workers}
    assert len({worker.mac for worker in workers}) == 15
    ranges = [range(job.slot_base, job.slot_base + job.slot_count) for job in plan.jobs]
    assert all(not set(a) & set(b) for i, a in enumerate(ranges) for b in ranges[i + 1:])
    # The controller library accepts the jobs as they are (no conflicts, within the program's limits).
    validate_jobs_together(controller_jobs(plan))
    assert plan_from_json(plan_to_json(plan)) == plan


def test_malformed_plan_json_is_refused():
    with pytest.raises(ValueError, match="malformed network plan"):
        plan_from_json({"jobs": [{"job_id": 0}]})


def test_cli_usage_errors_exit_2(capsys):
    assert main(["--workers", "40"]) == EXIT_USAGE
    assert "MAX_WORKERS" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--density", "abc"])
    assert exit_info.value.code == 2


def test_slots_follow_the_tensor_unless_given():
    # The dense first round (S packets per worker) stays within 5% of a worker's expected non-zero blocks.
    assert auto_slots(65536, 0.05) == 16                # the default run: at least 16
    assert auto_slots(4_194_304, 0.01) == 64            # 1,311 non-zero blocks expected: 64 <= 65.5
    assert auto_slots(26_214_400, 0.01) == 256
    assert auto_slots(26_214_400, 1.0) == constants.SLOT_COUNT
    assert auto_slots(26_214_400, 1.0, jobs=4) == constants.SLOT_COUNT // 4  # the switch's share per job
    assert TestbedConfig(size=4_194_304, density=0.01).slots == 64
    assert TestbedConfig(size=4_194_304, density=0.01, slots=8).slots == 8
