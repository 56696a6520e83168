# Run: .venv/bin/pytest tests/p4/test_tna_artifacts.py   (TOFINO_P4C=/path/to/p4c for the compile check)
"""p4src/tna/build/ and build-t2/ must match the Tofino program's sources, and the program must pass what checks it
here.

- The digest test runs everywhere (CI has no Tofino compiler): once a build is recorded, a change to any P4 file
  tna.p4 includes (its own or the shared wire format) without `make tofino2` (`make tofino`) fails it. Before a
  target's first recorded build it skips, saying so.
- p4test (the P4 front and mid end) checks the program's syntax and types where it is installed.
- The compile check runs the open Tofino compiler where there is one (TOFINO_P4C, or p4c-barefoot on PATH with
  its driver beside it) for each recorded target and compares its stages and stateful ALUs with the recorded
  summary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from omnireduce.p4src import constants as C
from omnireduce.p4src.tna import artifacts, summary

REPO = artifacts.P4SRC.parent
TNA_INCLUDE = Path(os.environ.get("TOFINO_P4INCLUDE", "/opt/tofino-build/src/p4c/backends/tofino/bf-p4c/p4include"))


def tofino_compiler() -> Path | None:
    """The p4c driver of a Tofino-enabled p4c build: $TOFINO_P4C, or the `p4c` beside a p4c-barefoot on PATH."""
    if os.environ.get("TOFINO_P4C"):
        return Path(os.environ["TOFINO_P4C"])
    backend = shutil.which("p4c-barefoot")
    if backend and (Path(backend).parent / "p4c").exists():
        return Path(backend).parent / "p4c"
    return None


TARGET_MAKE = {"tofino": "make tofino", "tofino2": "make tofino2"}


@pytest.mark.parametrize("target", sorted(artifacts.BUILDS))
def test_tna_build_matches_its_sources(target):
    build = artifacts.BUILDS[target]
    folder = build.folder.relative_to(REPO)
    recorded = build.recorded_digest()
    if recorded is None:
        pytest.skip(f"no {target} build is recorded ({folder}/SOURCES.sha256): run `{TARGET_MAKE[target]}` where the "
                    f"open Tofino compiler is installed and commit {folder}/")
    assert build.resources.exists() and build.context_json.exists() and build.bfrt_json.exists()
    assert artifacts.sources_digest() == recorded, (
        f"the Tofino program's sources changed since {folder}/ was compiled: run `{TARGET_MAKE[target]}` and commit it")
    resources = json.loads(build.resources.read_text())
    assert resources["target"] == target
    # What is recorded fits the chip: the summary refuses to record anything else.
    assert summary.over_limits(resources) == []


def test_tna_digest_follows_the_includes(tmp_path):
    sources = artifacts.p4_sources()
    names = {path.relative_to(artifacts.P4SRC).as_posix() for path in sources}
    # Its own files, the shared wire format and the generated code; none of the v1model program's controls.
    assert {"tna/tna.p4", "include/headers.p4", "include/defines.p4", "include/sizes.p4",
            "include/generated/lanes_header.p4", "tna/include/generated/worker_announcements.p4"} <= names
    assert not any(name.startswith("include/control/") for name in names)
    # A copy with one shared size changed digests differently.
    for path in sources:
        target = tmp_path / path.relative_to(artifacts.P4SRC)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    program = tmp_path / "tna" / "tna.p4"
    assert artifacts.sources_digest(program, tmp_path) == artifacts.sources_digest()
    sizes = tmp_path / "include" / "sizes.p4"
    sizes.write_text(sizes.read_text().replace("#define LANES 32", "#define LANES 33"))
    assert artifacts.sources_digest(program, tmp_path) != artifacts.sources_digest()


def test_v1model_digest_ignores_the_tna_program():
    from omnireduce.p4src import artifacts as v1model

    assert not any("tna" in path.relative_to(v1model.P4SRC).parts for path in v1model.p4_sources())


@pytest.mark.skipif(shutil.which("p4test") is None or not (TNA_INCLUDE / "tna.p4").exists(),
                    reason="p4test or the TNA includes (TOFINO_P4INCLUDE) are absent")
@pytest.mark.parametrize("generation", [1, 2])  # tna.p4 includes tna.p4 or t2na.p4 by __TARGET_TOFINO__
def test_tna_program_passes_the_p4_front_and_mid_end(generation):
    result = subprocess.run(["p4test", "--std", "p4-16", f"-D__TARGET_TOFINO__={generation}", "-I", str(TNA_INCLUDE),
                             str(artifacts.PROGRAM)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr


def recorded_targets() -> list[str]:
    return [target for target, build in sorted(artifacts.BUILDS.items()) if build.recorded_digest() is not None]


@pytest.mark.slow
@pytest.mark.skipif(tofino_compiler() is None, reason="no Tofino compiler (TOFINO_P4C, or p4c-barefoot on PATH)")
@pytest.mark.parametrize("target", recorded_targets() or ["tofino"])
def test_tna_program_compiles_to_the_recorded_resources(tmp_path, target):
    compiler = tofino_compiler()
    arch = {"tofino": "tna", "tofino2": "t2na"}[target]
    result = subprocess.run([str(compiler), "--target", target, "--arch", arch, "--std", "p4-16", "-g",
                             "--bf-rt-schema", str(tmp_path / "bf-rt.json"), "-o", str(tmp_path),
                             str(artifacts.PROGRAM)], capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-4000:]
    context = json.loads(next(tmp_path.rglob("context.json")).read_text())
    compiled = summary.summarize(context, None, target)
    build = artifacts.BUILDS[target]
    if build.recorded_digest() is not None:
        recorded = json.loads(build.resources.read_text())
        assert compiled["stages"] == recorded["stages"]
        assert compiled["stateful_alus"] == recorded["stateful_alus"]


def test_summary_counts_stages_and_stateful_alus_per_gress():
    context = {"tables": [
        {"name": "Ingress.identity.workers", "direction": "ingress", "table_type": "match",
         "stage_tables": [{"stage_number": 0}]},
        {"name": "Ingress.rounds.values.round_value_0", "direction": "ingress", "table_type": "stateful",
         "size": C.TNA_ROUND_COUNT, "alu_width": 32, "stage_tables": [{"stage_number": 3}]},
        {"name": "Egress.announcements.workers.worker_next_0", "direction": "egress", "table_type": "stateful",
         "size": C.TNA_SLOT_COUNT, "alu_width": 32, "stage_tables": [{"stage_number": 0}]},
        {"name": "Egress.announcements.workers.worker_next_1", "direction": "egress", "table_type": "stateful",
         "stage_tables": [{"stage_number": 0}]},
    ]}
    metrics = {"mau": {"srams": 300, "tcams": 4, "map_rams": 290, "logical_tables": 120}, "phv": {"normal": []}}
    result = summary.summarize(context, metrics)
    assert result["stages"]["available"] == 12
    # Ingress passes through stages 0-3, though 1 and 2 hold none of its tables.
    assert result["stages"]["ingress"] == {"used": 4, "numbers": [0, 3]}
    # A stage's four stateful ALUs serve both gresses: Tofino 1 has 48 in all, not 48 a gress.
    assert (result["stateful_alus"]["available"], result["stateful_alus"]["per_stage"]) == (48, 4)
    assert (result["stateful_alus"]["ingress"], result["stateful_alus"]["egress"]) == (1, 2)
    assert result["stateful_alus"]["total"] == 3
    assert result["memories"]["sram"] == {"used": 300, "available": 960}
    assert [r["name"] for r in result["registers"]] == [
        "Egress.announcements.workers.worker_next_0", "Egress.announcements.workers.worker_next_1",
        "Ingress.rounds.values.round_value_0"]
    assert result["over_limits"] == []
    assert summary.summarize(context, metrics, "tofino2")["stateful_alus"]["available"] == 80


def stateful(name: str, gress: str, stage: int) -> dict:
    return {"name": name, "direction": gress, "table_type": "stateful", "stage_tables": [{"stage_number": stage}]}


def test_summary_refuses_a_compile_that_does_not_fit(tmp_path, capsys, monkeypatch):
    # 13 ingress stages, and stage 0 with five stateful ALUs (three ingress, two egress), on Tofino 1.
    tables = [stateful(f"Ingress.r{stage}", "ingress", stage) for stage in range(13)]
    tables += [stateful("Ingress.a", "ingress", 0), stateful("Ingress.b", "ingress", 0)]
    tables += [stateful(f"Egress.w{n}", "egress", 0) for n in range(2)]
    problems = summary.summarize({"tables": tables})["over_limits"]
    assert problems == ["ingress uses 13 stages, tofino has 12", "stage 0 holds 5 stateful ALUs, tofino has 4"]
    assert summary.summarize({"tables": tables}, target="tofino2")["over_limits"] == [
        "stage 0 holds 5 stateful ALUs, tofino2 has 4"]
    # The command exits 1 with the reasons, and writes no build.
    out = tmp_path / "out"
    (out / "pipe").mkdir(parents=True)
    (out / "pipe" / "context.json").write_text(json.dumps({"tables": tables}))
    (out / "bf-rt.json").write_text("{}")
    folder = tmp_path / "build"
    monkeypatch.setitem(artifacts.BUILDS, "tofino", artifacts.Build("tofino", folder))
    assert summary.main([str(out), "--compiler", "p4c test"]) == 1
    assert "does not fit tofino: ingress uses 13 stages, tofino has 12" in capsys.readouterr().err
    assert not folder.exists()


def test_summary_reads_memories_and_phv_from_the_compiler_logs():
    stage = {"stage_number": 0,
             "rams": {"nRows": 8, "nColumns": 10, "srams": [{"row": 0, "column": 2}, {"row": 1, "column": 2}]},
             "map_rams": {"nRows": 8, "nUnits": 6, "maprams": [{"row": 0, "unit_id": 0}]},
             "tcams": {"nRows": 12, "nColumns": 2, "tcams": []},
             "meter_alus": {"nAlus": 4, "meters": [{"row": 1}, {"row": 3}]}}
    resources = {"resources": {"mau": {"nStages": 20, "mau_stages": [stage, {**stage, "stage_number": 1}]}}}
    phv = {"containers": [
        {"phv_number": 0, "bit_width": 32, "container_type": "normal",
         "slices": [{"slice_info": {"lsb": 0, "msb": 15}}, {"slice_info": {"lsb": 8, "msb": 23}}]},
        {"phv_number": 1, "bit_width": 32, "container_type": "normal",
         "slices": [{"slice_info": {"lsb": 0, "msb": 31}}]},
        {"phv_number": 64, "bit_width": 8, "container_type": "mocha", "slices": []}]}
    result = summary.summarize({"tables": []}, None, "tofino2", resources=resources, phv=phv)
    assert result["memories"]["sram"] == {"used": 4, "available": 1600, "by_stage": {"0": 2, "1": 2}}
    assert result["memories"]["map_ram"]["used"] == 2 and result["memories"]["map_ram"]["available"] == 960
    assert result["memories"]["tcam"] == {"used": 0, "available": 480, "by_stage": {}}
    assert result["memories"]["stateful_alus"]["used"] == 4
    assert result["phv"]["containers"] == [{"kind": "mocha", "bits": 8, "count": 1, "bits_used": 0},
                                           {"kind": "normal", "bits": 32, "count": 2, "bits_used": 56}]
    assert result["phv"]["containers_total"] == 3


@pytest.mark.parametrize("target", sorted(artifacts.BUILDS))
def test_recorded_bf_rt_names_are_the_ones_the_docs_and_the_model_use(target):
    bfrt = artifacts.BUILDS[target].bfrt_json
    if not bfrt.exists():
        pytest.skip(f"no {target} build is recorded ({bfrt.relative_to(REPO)})")
    from . import tna_model

    names = {table["name"] for table in json.loads(bfrt.read_text())["tables"]}
    expected = [tna_model.WORKERS, tna_model.JOBS, tna_model.ROUTES, tna_model.DESTINATIONS, tna_model.SLOT_TENSOR,
                tna_model.WORKER_NEXT + "0", tna_model.ROUND_VALUE + "0", "Ingress.rounds.round_block"]
    missing = [name for name in expected if f"pipe.{name}" not in names]
    assert not missing, f"bf-rt.json has no {missing}; it has {sorted(names)[:40]}"
