# Run: .venv/bin/pytest tests/p4/test_artifacts.py
"""p4src/build/ and the generated code must match the P4 sources they come from (CI has no p4c to rebuild them)."""

import json

from google.protobuf import text_format

from omnireduce.p4proto import p4info_pb2
from omnireduce.p4src import artifacts, constants, generate


def test_generated_code_and_constants_are_up_to_date():
    assert generate.stale_outputs() == [], "run `make constants` and commit the result"


def test_build_matches_p4_sources():
    assert artifacts.BMV2_JSON.exists() and artifacts.P4INFO.exists(), "p4src/build/ is missing: run `make p4`"
    assert artifacts.sources_digest() == artifacts.recorded_digest(), (
        "the P4 sources changed since p4src/build/ was compiled: run `make p4` (needs p4c-bm2-ss) and commit p4src/build/"
    )


def test_digest_sees_every_p4_source(tmp_path):
    # A copy of the sources with one character changed must digest differently.
    for path in artifacts.p4_sources():
        target = tmp_path / path.relative_to(artifacts.P4SRC)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    assert artifacts.sources_digest(tmp_path) == artifacts.sources_digest()
    sizes = tmp_path / "include" / "sizes.p4"
    sizes.write_text(sizes.read_text().replace("#define LANES 32", "#define LANES 33"))
    assert artifacts.sources_digest(tmp_path) != artifacts.sources_digest()


def test_compiled_header_layout_matches_constants():
    program = json.loads(artifacts.BMV2_JSON.read_text())
    header_types = {h["name"]: h for h in program["header_types"]}
    omni = [(name, width) for name, width, *_ in header_types["omni_t"]["fields"]]
    assert tuple(omni) == constants.OMNI_HEADER_FIELDS
    lanes = header_types["omni_lanes_t"]["fields"]
    assert len(lanes) == constants.LANES and all(width == 32 for _, width, *_ in lanes)


def test_p4info_register_sizes_match_constants():
    p4info = p4info_pb2.P4Info()
    text_format.Parse(artifacts.P4INFO.read_text(), p4info)
    sizes = {r.preamble.name.rsplit(".", 1)[-1]: r.size for r in p4info.registers}
    assert sizes["round_block"] == sizes["round_tensor"] == sizes["round_next"] == constants.ROUND_COUNT
    assert sizes["slot_tensor"] == constants.SLOT_COUNT
    assert [sizes[f"worker_next_{group}"] for group in range(constants.WORKER_GROUPS)] == \
        [constants.SLOT_COUNT] * constants.WORKER_GROUPS
    widths = {r.preamble.name.rsplit(".", 1)[-1]: r.type_spec.bitstring.bit.bitwidth for r in p4info.registers}
    assert widths["worker_next_0"] == 32 * constants.WORKERS_PER_GROUP
    assert sorted(k for k in sizes if k.startswith("round_value_")) == sorted(
        f"round_value_{lane}" for lane in range(constants.LANES))
