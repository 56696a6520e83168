# Run: /work/main/.venv/bin/pytest tests/testbed/test_cli.py -q
"""omnireduce-testbed's arguments: bad values are usage errors (exit 2) that name the argument, before anything
starts."""

from __future__ import annotations

import logging

import pytest

from omnireduce.testbed import Fault, FaultKind, NetKind, PortKind, TestbedConfig
from omnireduce.testbed.cpus import CpuPinning
from omnireduce.testbed.model import ImpairSite
from omnireduce.testbed.cli import EXIT_USAGE, build_parser, config_from_args, main


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "argument --workers: 0 is not a positive integer"),
    (["--size", "many"], "argument --size: 'many' is not an integer"),
    (["--density", "nan"], "argument --density: 'nan' is not a fraction"),
    (["--density", "1.5"], "argument --density: 1.5 is not a fraction in [0, 1]"),
    (["--timeout", "inf"], "argument --timeout: 'inf' is not a finite number of seconds"),
    (["--timeout", "0"], "argument --timeout: 0 is not a positive number of seconds"),
    (["--fault", "explode"], "argument --fault: unknown fault 'explode'"),
    (["--loss", "1"], "argument --loss: 1 is not"),
    (["--fault", "nan-input@x"], "argument --fault: fault 'nan-input@x': 'x' is not a number"),
    (["--impair", "drop=5"], "argument --impair: 'drop=5': drop must be a probability in [0, 1), got 5.0"),
    (["--impair", "3/sideways:drop=0.1"], "argument --impair: '3/sideways:drop=0.1': direction must be 'in' or"),
    (["--impair-at", "wire"], "argument --impair-at: 'wire' is not one of switch, links"),
    (["--cpu-pinning", "maybe"], "argument --cpu-pinning: 'maybe' is not one of auto, on, off"),
    (["--net", "ethernet"], "argument --net: 'ethernet' is not one of loopback, mininet"),
])
def test_bad_values_exit_2_naming_the_argument(capsys: pytest.CaptureFixture[str], argv: list[str],
                                              message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_values_reach_the_config() -> None:
    args = build_parser().parse_args(["--workers", "3", "--density", "0.25", "--timeout", "7.5",
                                      "--fault", "kill-switch@1.5", "--loss", "0.01"])
    config = config_from_args(args)
    assert (config.workers, config.density, config.timeout, config.loss) == (3, 0.25, 7.5, 0.01)
    assert config_from_args(build_parser().parse_args([])).timeout is None
    assert config.fault == Fault(FaultKind.KILL_SWITCH, after_s=1.5)
    config = config_from_args(build_parser().parse_args(["--impair", "drop=1%", "--impair", "2/out:delay=5ms",
                                                         "--net", "mininet", "--impair-at", "switch"]))
    assert config.impairment_plan().describe() == ["drop=0.01", "2/out:delay=5ms"]
    assert config.impair_at is ImpairSite.SWITCH


@pytest.mark.parametrize("argv, problem, message", [
    (["--net", "mininet"], "Mininet mode needs root", "--net mininet cannot run here, Mininet mode needs root; run it "
                                                       "as root where Mininet is installed"),
    (["--net", "mininet", "--switch", "bmv2"], None, "--switch bmv2 cannot run here, simple_switch_grpc is not on PATH"),
    (["--net", "mininet", "--loss", "0.01"], None, "--impair on Mininet links cannot run here, no netem here; use "
                                                   "--impair-at switch (the softswitch's own fault injection)"),
])
def test_an_unavailable_network_fails_up_front(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                               argv: list[str], problem: str | None, message: str) -> None:
    from omnireduce.testbed import runner

    monkeypatch.setattr(runner, "mininet_unavailable", lambda: problem)
    monkeypatch.setattr(runner, "bmv2_binary", lambda: None)
    monkeypatch.setattr(runner, "netem_unavailable", lambda: "no netem here")
    assert main(argv) == EXIT_USAGE
    output = capsys.readouterr()
    assert output.out == ""  # no report of a run that never was
    assert "omnireduce-testbed: error: " + message in output.err
    assert "writing the inputs" not in output.err  # nothing was done before the check


def test_ports_reach_the_config_and_are_the_loopback_softswitchs_only() -> None:
    assert config_from_args(build_parser().parse_args([])).ports is None
    assert config_from_args(build_parser().parse_args(["--ports", "udp"])).ports is PortKind.UDP
    assert config_from_args(build_parser().parse_args(["--ports", "shm"])).ports is PortKind.SHM
    assert any("--ports is the loopback" in problem
               for problem in TestbedConfig(net=NetKind.MININET, ports=PortKind.UDP).problems())


def test_cpu_pinning_reaches_the_config_and_on_is_the_loopback_testbeds_only() -> None:
    assert config_from_args(build_parser().parse_args([])).cpu_pinning is CpuPinning.AUTO
    assert config_from_args(build_parser().parse_args(["--cpu-pinning", "off"])).cpu_pinning is CpuPinning.OFF
    assert any("--cpu-pinning on applies to the loopback testbed" in problem
               for problem in TestbedConfig(net=NetKind.MININET, cpu_pinning=CpuPinning.ON).problems())
    assert TestbedConfig(net=NetKind.MININET).problems() == TestbedConfig(
        net=NetKind.MININET, cpu_pinning=CpuPinning.OFF).problems()  # auto never stops a Mininet run


def test_pinning_on_a_single_cpu_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("omnireduce.testbed.cpus.available_cpus", lambda: frozenset({3}))
    assert main(["--cpu-pinning", "on"]) == EXIT_USAGE
    output = capsys.readouterr()
    assert ("omnireduce-testbed: error: --cpu-pinning on needs at least 2 CPUs (one for the switch, one for the "
            "agents); this process may use 1 (CPU 3); use --cpu-pinning auto or off") in output.err
    assert "writing the inputs" not in output.err


def test_shm_ports_without_a_compiler_fall_back_to_udp_saying_why(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from omnireduce.testbed import loopback

    monkeypatch.setattr(loopback, "shm_unavailable", lambda: "no C compiler ('cc' is not on PATH)")
    with caplog.at_level(logging.WARNING, logger="omnireduce.testbed.loopback"):
        assert loopback.port_kind(TestbedConfig().ports) is PortKind.UDP
    assert "shared-memory ports unavailable (no C compiler ('cc' is not on PATH)): the switch's ports are UDP " \
           "sockets on loopback" in caplog.text
    assert loopback.port_kind(TestbedConfig(ports=PortKind.UDP).ports) is PortKind.UDP


def test_both_port_kinds_carry_the_impairment_plan() -> None:
    from pathlib import Path

    from omnireduce.softswitch.faults import ImpairmentPlan
    from omnireduce.testbed.switches import impairment_argv, softswitch_loopback_argv, softswitch_ring_argv

    config = config_from_args(build_parser().parse_args(["--ports", "shm", "--loss", "0.01",
                                                         "--impair", "2/out:delay=1ms", "--seed", "7"]))
    plan = config.impairment_plan()
    tail = tuple(impairment_argv(plan, 7))
    assert tail and "--loss" not in tail
    ring = softswitch_ring_argv([(1, Path("/dev/shm/port1"))], 50051, impairments=plan, impair_seed=7)
    udp = softswitch_loopback_argv([(1, ("127.0.0.1", 1), ("127.0.0.1", 2))], 50051, impairments=plan,
                                   impair_seed=7)
    assert ring[-len(tail):] == tail == udp[-len(tail):]
    assert "1@shm:/dev/shm/port1" in ring
    assert "--impair" not in softswitch_ring_argv([(1, Path("/dev/shm/port1"))], 50051, impairments=ImpairmentPlan())


def test_the_pipeline_choice_reaches_the_softswitch_on_both_port_kinds() -> None:
    from pathlib import Path

    from omnireduce.testbed.switches import softswitch_loopback_argv, softswitch_ring_argv

    assert config_from_args(build_parser().parse_args([])).pipeline == "auto"
    config = config_from_args(build_parser().parse_args(["--pipeline", "python"]))
    assert config.pipeline == "python" and config.problems() == []
    for pipeline, expected in (("python", ["--backend", "python"]), ("native", ["--backend", "native"]),
                               ("auto", [])):
        ring = softswitch_ring_argv([(1, Path("/dev/shm/port1"))], 50051, pipeline=pipeline)
        udp = softswitch_loopback_argv([(1, ("127.0.0.1", 1), ("127.0.0.1", 2))], 50051, pipeline=pipeline)
        for argv in (ring, udp):
            flags = [argv[i:i + 2] for i in range(len(argv) - 1) if argv[i] == "--backend"]
            assert [list(flag) for flag in flags] == ([expected] if expected else []), argv


def test_asking_for_shm_ports_without_a_compiler_fails_up_front(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from omnireduce.testbed import runner

    monkeypatch.setattr(runner, "shm_unavailable", lambda: "cffi is not installed")
    assert main(["--ports", "shm"]) == EXIT_USAGE
    assert ("omnireduce-testbed: error: --ports shm cannot run here, the shared-memory rings need a C compiler and "
            "cffi (cffi is not installed); use --ports udp") in capsys.readouterr().err


def test_json_usage_errors_are_json_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    with pytest.raises(SystemExit) as exit_info:
        main(["--json", "--workers", "0"])
    assert exit_info.value.code == EXIT_USAGE
    output = capsys.readouterr()
    assert json.loads(output.out) == {"ok": False, "error": "argument --workers: 0 is not a positive integer",
                                      "exit_code": EXIT_USAGE}
    assert "omnireduce-testbed: error: argument --workers" in output.err
    assert main(["--json", "--workers", "40"]) == EXIT_USAGE
    error = json.loads(capsys.readouterr().out)
    assert error["ok"] is False and "--workers must be in 1..32" in error["error"]


def test_failures_of_a_known_kind_say_what_to_try() -> None:
    from omnireduce.testbed.model import TestbedConfig
    from omnireduce.testbed.runner import what_to_try

    config = TestbedConfig()
    stalled = what_to_try("worker 1 of job 0 exited with code 4: Stalled: job0/w1: no result for 10 s", config)
    assert "stopped progressing" in stalled and "--keep-logs DIR" in stalled
    assert "never joined" in what_to_try("worker 0 of job 0 exited with code 4: WorkerMissing: ...", config)
    assert what_to_try("switch process died (SIGKILL, exit -9)", config) == ""


def test_help_has_no_speed_figures_only_the_cost_and_where_rates_are(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "packets/s:" not in text and "10-30k" not in text and "W*(N/32)*d" not in text
    assert "docs/performance.md" in text and "exit codes:" in text and "30 s without a result (Stalled)" in text
