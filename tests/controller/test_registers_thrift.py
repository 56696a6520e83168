# Run: /work/main/.venv/bin/pytest tests/controller/test_registers_thrift.py
"""Register access over BMv2's Thrift runtime (simple_switch_CLI), against a stand-in CLI with the same text
interface (tests/controller/fake_runtime_cli.py): commands, output parsing, refusals, an unreachable runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from omnireduce.controller.errors import SwitchUnreachableError
from omnireduce.controller.p4info import RegisterInfo
from omnireduce.controller.registers import RegisterAccessError, ThriftRegisters

STATE = RegisterInfo(1, "IngressPipe.aggregation.round_state", "round_state", 8, 8)
OTHER = RegisterInfo(2, "IngressPipe.aggregation.slot_tensor", "slot_tensor", 2, 16)
UNKNOWN = RegisterInfo(3, "IngressPipe.aggregation.nope", "nope", 8, 8)


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    state = tmp_path / "registers.json"
    state.write_text(json.dumps({STATE.name: [0, 1, 2, 3, 4, 5, 6, 7], OTHER.name: [5, 6]}))
    script = tmp_path / "simple_switch_CLI"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).parent / 'fake_runtime_cli.py'} \"$@\"\n")
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_BMV2_REGISTERS", str(state))
    monkeypatch.setenv("FAKE_BMV2_THRIFT_PORT", "9555")
    return str(script), state


def test_read_whole_array_and_cells(fake_cli) -> None:
    cli, _ = fake_cli
    registers = ThriftRegisters(9555, cli=cli)
    assert registers.read({STATE: None}) == {STATE.name: {index: index for index in range(8)}}
    assert registers.read({STATE: [6]}) == {STATE.name: {6: 6}}  # one cell: a per-cell read
    assert registers.read({STATE: [1, 2, 3]}) == {STATE.name: {1: 1, 2: 2, 3: 3}}  # many: one array read, filtered
    both = registers.read({STATE: [7], OTHER: None})  # several registers in one CLI run
    assert both == {STATE.name: {7: 7}, OTHER.name: {0: 5, 1: 6}}


def test_write_then_read(fake_cli) -> None:
    cli, state = fake_cli
    registers = ThriftRegisters(9555, cli=cli)
    registers.write({STATE: {0: 9, 7: 0}, OTHER: {1: 0}})
    assert json.loads(state.read_text()) == {STATE.name: [9, 1, 2, 3, 4, 5, 6, 0], OTHER.name: [5, 0]}
    assert registers.read({STATE: [0, 7]}) == {STATE.name: {0: 9, 7: 0}}


def test_refusals_name_the_problem(fake_cli) -> None:
    cli, _ = fake_cli
    registers = ThriftRegisters(9555, cli=cli)
    with pytest.raises(RegisterAccessError, match=r"Error: Invalid register name \(IngressPipe.aggregation.nope\)"):
        registers.read({UNKNOWN: None})
    with pytest.raises(RegisterAccessError, match=r"refused 1 of 2 command\(s\); first: Invalid register operation"):
        registers.write({STATE: {3: 1, 8: 1}})


def test_unreachable_runtime(fake_cli) -> None:
    cli, _ = fake_cli
    with pytest.raises(SwitchUnreachableError, match="no BMv2 Thrift runtime at 127.0.0.1:9556"):
        ThriftRegisters(9556, cli=cli).read({STATE: None})


def test_missing_cli_is_a_clear_error(tmp_path: Path) -> None:
    from omnireduce.controller.errors import BadInputError

    with pytest.raises(BadInputError, match="not found on PATH"):
        ThriftRegisters(9555, cli=str(tmp_path / "no_such_cli")).read({STATE: None})
