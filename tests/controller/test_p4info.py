# Run: /work/main/.venv/bin/pytest tests/controller/test_p4info.py
"""The P4Info index: lookups by name, alias and id, misses with suggestions, differences between two P4Infos,
and (once p4src/build/ holds the compiled program) every name of controller/program.py in the committed P4Info."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from omnireduce.controller import program
from omnireduce.controller.errors import BadInputError, NameLookupError
from omnireduce.controller.p4info import P4InfoIndex, load_p4info, p4info_differences
from omnireduce.p4src import artifacts, constants

from tests.controller.synthetic import synthetic_p4info


@pytest.fixture
def index() -> P4InfoIndex:
    return P4InfoIndex(synthetic_p4info())


def test_lookup_by_full_name_alias_and_id(index: P4InfoIndex) -> None:
    table = index.table("IngressPipe.identity.workers")
    assert index.table("workers") is table
    assert index.tables.by_id(table.id) is table
    assert [field.name for field in table.match_fields] == ["ingress_port", "src_addr", "udp_src_port"]
    assert table.match_field("ingress_port").bitwidth == 9
    assert table.match_field("ingress_port").kind == "exact"
    assert index.table("ipv4_routes").match_field("dst_addr").kind == "lpm"
    action = index.table_action(table, "IngressPipe.identity.set_worker")
    assert [(param.name, param.bitwidth) for param in action.params] == [("job_id", 16), ("worker_id", 8)]
    assert index.register(program.WORKER_NEXT_GROUPS[0]).bitwidth == 32 * constants.WORKERS_PER_GROUP
    assert index.counter(program.INGRESS_DROPS).unit == "both"


def test_miss_suggests_the_closest_name(index: P4InfoIndex) -> None:
    with pytest.raises(NameLookupError, match=r"no table named 'IngressPipe.identity.worker'\. "
                                              r"Did you mean 'IngressPipe.identity.workers'\?"):
        index.table("IngressPipe.identity.worker")
    with pytest.raises(NameLookupError, match=r"Did you mean 'IngressPipe.aggregation.round_next'\?"):
        index.register("IngressPipe.aggregation.round_nxt")
    with pytest.raises(NameLookupError, match=r"no match field of table 'IngressPipe.identity.workers' named "
                                              r"'src_adr'\. Did you mean 'src_addr'\?"):
        index.table("workers").match_field("src_adr")
    with pytest.raises(NameLookupError, match=r"no parameter of action .* named 'jobid'\. Did you mean 'job_id'\?"):
        index.action(program.SET_WORKER).param("jobid")
    with pytest.raises(NameLookupError, match="no table with id 12345"):
        index.tables.by_id(12345)
    # A miss is bad input (exit code 2 in the CLI), and a LookupError for library callers.
    assert issubclass(NameLookupError, BadInputError) and issubclass(NameLookupError, LookupError)


def test_an_action_of_another_table_is_refused(index: P4InfoIndex) -> None:
    with pytest.raises(NameLookupError, match="no action of table 'IngressPipe.identity.workers' named "
                                              "'IngressPipe.identity.set_job'"):
        index.table_action(index.table("workers"), program.SET_JOB)


def test_identical_p4infos_have_no_differences() -> None:
    assert p4info_differences(synthetic_p4info(), synthetic_p4info()) == []


def test_differences_name_renamed_and_renumbered_objects() -> None:
    ours, theirs = synthetic_p4info(), synthetic_p4info()
    theirs.tables[0].preamble.name = "IngressPipe.identity.peers"
    theirs.registers[0].preamble.id += 1000
    theirs.actions[0].params[0].bitwidth = 12
    differences = "\n".join(p4info_differences(ours, theirs))
    assert "table 'IngressPipe.identity.workers' is missing on the switch" in differences
    assert "the switch has a table 'IngressPipe.identity.peers' that our P4Info lacks" in differences
    assert f"register '{program.ROUND_REGISTERS[0]}' differs in id: ours" in differences
    assert f"action '{program.SET_WORKER}' differs in parameters" in differences


def test_load_p4info_text_and_binary(tmp_path: Path) -> None:
    p4info = synthetic_p4info()
    text_path = tmp_path / "x.p4info.txtpb"
    text_path.write_text(text_format.MessageToString(p4info))
    binary_path = tmp_path / "x.p4info.bin"
    binary_path.write_bytes(p4info.SerializeToString())
    assert load_p4info(text_path) == p4info
    assert load_p4info(binary_path) == p4info


def test_load_p4info_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="cannot read P4Info"):
        load_p4info(tmp_path / "missing.txtpb")
    garbage = tmp_path / "garbage.txtpb"
    garbage.write_text("tables { preamble { id: 1 name: ")
    with pytest.raises(BadInputError, match="is not a P4Info"):
        load_p4info(garbage)
    empty = tmp_path / "empty.txtpb"
    empty.write_text("")
    with pytest.raises(BadInputError, match="empty P4Info"):
        load_p4info(empty)


committed = pytest.mark.skipif(not artifacts.P4INFO.is_file(),
                               reason=f"{artifacts.P4INFO} not compiled yet (make p4)")


@committed
def test_every_program_name_exists_in_the_committed_p4info() -> None:
    index = P4InfoIndex.from_file(artifacts.P4INFO)
    for table, keys in program.TABLE_KEYS:
        assert [field.name for field in index.table(table).match_fields] == list(keys), table
    for table, action, params in program.ACTIONS:
        info = index.table_action(index.table(table), action)
        assert [param.name for param in info.params] == list(params), action
    for register in program.REGISTERS:
        index.register(register)
    for counter in program.COUNTERS:
        assert index.counter(counter).unit == "both", counter


@committed
def test_committed_p4info_agrees_with_the_synthetic_test_pipeline() -> None:
    """The synthetic pipeline stands in for the compiled one in tests; it must describe the same names and widths."""
    real, synthetic = P4InfoIndex.from_file(artifacts.P4INFO), P4InfoIndex(synthetic_p4info())
    for table in synthetic.tables:
        assert [(f.name, f.bitwidth, f.kind) for f in real.table(table.name).match_fields] == \
               [(f.name, f.bitwidth, f.kind) for f in table.match_fields]
    for register in synthetic.registers:
        assert (real.register(register.name).size, real.register(register.name).bitwidth) == \
               (register.size, register.bitwidth), register.name
    for counter in synthetic.counters:
        assert real.counter(counter.name).size == counter.size, counter.name
