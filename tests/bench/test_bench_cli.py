# Run: .venv/bin/pytest tests/bench/test_bench_cli.py -q
"""omnireduce-bench's command line: subcommands, typed options, clear errors for bad input."""

from __future__ import annotations

import pytest

from omnireduce.bench.cli import build_parser, comma_list, sweep_config
from omnireduce.bench.sweep import DEFAULT_MODES, QUICK, SweepConfig
from omnireduce import argtypes


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def refused(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as stop:
        parse(*argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_allreduce_defaults_are_the_full_sweep():
    config = sweep_config(parse("allreduce"))
    assert config == SweepConfig()
    assert config.densities == (1.0, 0.4, 0.1, 0.01, 0.001)
    assert config.workers == (2, 4, 8, 16, 32)
    assert config.modes == DEFAULT_MODES and "gloo-sparse-coo-flat" not in config.modes
    assert config.calls == 1


def test_allreduce_lists_and_quick():
    args = parse("allreduce", "--densities", "0.5, 0.01", "--workers", "2,4", "--sizes", "1024", "--repeat", "5",
                 "--modes", "sparse,gloo")
    config = sweep_config(args)
    assert config.densities == (0.5, 0.01) and config.workers == (2, 4) and config.sizes == (1024,)
    assert config.repeat == 5 and config.modes == ("sparse", "gloo")
    flat = sweep_config(parse("allreduce", "--modes", "sparse,gloo-sparse-coo-flat", "--calls", "4"))
    assert flat.modes == ("sparse", "gloo-sparse-coo-flat") and flat.calls == 4
    quick = sweep_config(parse("allreduce", "--quick", "--workers", "8"))
    assert quick.workers == QUICK.workers and quick.sizes == QUICK.sizes  # --quick wins over point options


@pytest.mark.parametrize("argv, message", [
    (("allreduce", "--densities", "0.1,2"), "argument --densities: 2 is not a fraction in [0, 1]"),
    (("allreduce", "--densities", "0.1,,0.2"), "is not a comma-separated list"),
    (("allreduce", "--workers", "0"), "argument --workers: 0 is not in 1..32"),
    (("allreduce", "--workers", "64"), "64 is not in 1..32"),
    (("allreduce", "--sizes", "many"), "'many' is not an integer"),
    (("allreduce", "--modes", "nccl"),
     "unknown mode 'nccl'; choose from sparse, dense, gloo, gloo-sparse-coo, gloo-sparse-coo-flat"),
    (("allreduce", "--calls", "0"), "argument --calls: 0 is not a positive integer"),
    (("allreduce", "--timeout", "-1"), "is not a positive number of seconds"),
    (("model", "--rates", "10,fast"), "'fast' is not a number"),
    (("model", "--compute-ms", "BERT"), "is not NAME=MILLISECONDS"),
    (("model", "--profile", "X=big:0.1"), "is not NAME=MB:DENSITY"),
    (("model", "--from", "/nonexistent/sweep.json"), "no such file: /nonexistent/sweep.json"),
    (("switch", "--blocks", "0"), "0 is not a positive integer"),
    (("agent", "--values", "-3"), "-3 is not a positive integer"),
    (("fly",), "invalid choice: 'fly'"),
])
def test_bad_input_gets_a_clear_error(capsys, argv, message):
    assert message in refused(capsys, *argv)


def test_a_subcommand_is_required(capsys):
    assert "required" in refused(capsys)


def test_points_leave_out_what_exceeds_max_elements():
    config = SweepConfig(densities=(0.1,), workers=(2, 32), sizes=(1024, 65536), max_elements=65536 * 2)
    assert config.points() == [(2, 1024, 0.1), (2, 65536, 0.1), (32, 1024, 0.1)]
    assert config.left_out() == [(32, 65536)]


def test_comma_list_names_itself_in_errors():
    parse_list = comma_list(argtypes.integer(minimum=1), "positive integers")
    assert parse_list("1,2") == (1, 2)
    with pytest.raises(Exception, match="comma-separated list of positive integers"):
        parse_list("1,")


def test_efficiency_is_a_subcommand_with_typed_options(capsys):
    args = parse("efficiency", "--workers", "4", "--workers", "8", "--density", "0.01", "--size", "4096",
                 "--loss", "0.05", "--no-standalone")
    assert args.workers == [4, 8] and args.density == [0.01] and args.size == [4096] and args.loss == [0.05]
    assert args.no_standalone and callable(args.run)
    assert "fraction" in refused(capsys, "efficiency", "--density", "1.5")
    assert "33" in refused(capsys, "efficiency", "--workers", "33")
    assert "--size" in refused(capsys, "efficiency", "--size", "0")


def test_efficiency_refuses_a_point_the_testbed_cannot_run_before_measuring_any(capsys, monkeypatch):
    from omnireduce.bench import bench_efficiency, cli

    def measured(*args, **kwargs):
        raise AssertionError("a point was measured")

    monkeypatch.setattr(bench_efficiency, "measure_point", measured)
    assert cli.main(["efficiency", "--no-standalone", "--workers", "2", "--size", "4096", "--size", "262144",
                     "--slots", "1024"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("omnireduce-bench efficiency: error: ") and "512 (SLOT_COUNT)" in error


def test_gpu_scan_hands_its_options_to_the_gpu_bench(capsys):
    from omnireduce.bench import cli

    pytest.importorskip("torch", reason="omnireduce-bench gpu-scan needs PyTorch")
    assert cli.main(["gpu-scan", "--device", "cpu", "--sizes-mb", "0.03125", "--warmup", "0", "--repeats", "1",
                     "--no-compile"]) == 0
    assert "variant=library_block_scores" in capsys.readouterr().out
