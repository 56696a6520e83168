# Run: /work/main/.venv/bin/pytest tests/testbed/test_cli.py -q
"""omnireduce-testbed's arguments: bad values are usage errors (exit 2) that name the argument, before anything
starts."""

from __future__ import annotations

import pytest

from omnireduce.testbed import Fault, FaultKind
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
