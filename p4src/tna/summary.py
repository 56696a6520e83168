"""Record a Tofino compile of p4src/tna/tna.p4 in its build folder (the last step of `make tofino`/`make tofino2`).

Reads the compiler's output folder (``-o`` of the p4c driver; ``-g`` makes it write the logs read here):
``context.json`` (every table and stateful table, its gress and its stages), ``pipe/logs/resources.json`` (the
memories of every MAU stage and how many the stage has), ``pipe/logs/phv.json`` (the PHV containers allocated) and
the BF Runtime JSON. Writes, into p4src/tna/build/ (``--target tofino``) or p4src/tna/build-t2/ (``tofino2``):

- ``resources.json``: the summary the issue asks for -- stages used of the chip's, per gress; stateful ALUs used
  per stage of the four each stage has (ingress and egress share a stage's ALUs and memories: Tofino 1 has 48 in
  all, Tofino 2 80); SRAM, map RAM and TCAM blocks used of those available; PHV containers by kind and width; each
  register's stage and size;
- ``context.json`` and ``bf-rt.json``: copies without indentation (what the driver and a BF Runtime server load);
- ``SOURCES.sha256``: the digest of the sources compiled, and the compiler's version.

A compile that does not fit the target (a gress using more stages than it has, or a stage more stateful ALUs than
it has) is not recorded: the command says why and exits with status 1.

Run ``python -m omnireduce.p4src.tna.summary OUT --compiler "$(p4c --version)" [--target tofino2]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from omnireduce.p4src.tna import artifacts


@dataclass(frozen=True, slots=True)
class Chip:
    """What one pipe of a Tofino generation has (Tofino 1: 12 stages of 4 stateful ALUs, 80 SRAM, 48 map RAM and
    24 TCAM blocks each; Tofino 2: 20 such stages). A stage's ALUs and memories serve its ingress and its egress
    tables together. Where the compiler's resources.json says how many a stage has, that is used instead."""

    stages: int
    salus_per_stage: int = 4
    srams_per_stage: int = 80
    map_rams_per_stage: int = 48
    tcams_per_stage: int = 24


CHIPS = {"tofino": Chip(12), "tofino2": Chip(20)}


def _find(out: Path, name: str) -> Path | None:
    """The compiler's file `name` under `out` (its place differs between compiler versions), shallowest first."""
    matches = sorted(out.rglob(name), key=lambda path: len(path.parts))
    return matches[0] if matches else None


def _gress(table: dict) -> str:
    direction = table.get("direction") or table.get("gress")
    if direction:
        return str(direction)
    name = str(table.get("name", ""))
    return "egress" if ".Egress." in f".{name}" or name.startswith("Egress") else "ingress"


def _stages(table: dict) -> list[int]:
    stages = {entry["stage_number"] for entry in table.get("stage_tables", []) if "stage_number" in entry}
    for attached in ("stateful_table_refs", "action_data_table_refs"):
        for ref in table.get(attached, []):
            if "stage_number" in ref:
                stages.add(ref["stage_number"])
    return sorted(stages)


def _memories(resources: dict, chip: Chip) -> dict:
    """SRAM, map RAM, TCAM blocks and stateful (meter) ALUs used, from the compiler's pipe/logs/resources.json, with
    the number available (its own per-stage figures times its stage count)."""
    mau = resources.get("resources", resources).get("mau", {})
    stages = mau.get("mau_stages", [])
    n_stages = mau.get("nStages", chip.stages)
    kinds = {  # summary name: (stage key, list key, how many one stage has)
        "sram": ("rams", "srams", lambda u: u.get("nRows", 8) * u.get("nColumns", 10)),
        "map_ram": ("map_rams", "maprams", lambda u: u.get("nRows", 8) * u.get("nUnits", 6)),
        "tcam": ("tcams", "tcams", lambda u: u.get("nRows", 12) * u.get("nColumns", 2)),
        "stateful_alus": ("meter_alus", "meters", lambda u: u.get("nAlus", chip.salus_per_stage)),
    }
    result: dict = {"stages_available": n_stages}
    for name, (stage_key, list_key, per_stage) in kinds.items():
        used, available, by_stage = 0, None, {}
        for stage in stages:
            usage = stage.get(stage_key, {})
            count = len(usage.get(list_key, []))
            used += count
            if count:
                by_stage[str(stage.get("stage_number"))] = count
            available = per_stage(usage) * n_stages if usage else available
        result[name] = {"used": used, "available": available, "by_stage": by_stage}
    result["logical_tables"] = sum(len(stage.get("logical_tables", {}).get("ids", [])) for stage in stages)
    return result


def _phv(phv: dict) -> dict:
    """PHV containers allocated, by kind (normal, tagalong, mocha, dark) and width, from pipe/logs/phv.json."""
    containers: Counter[tuple[str, int]] = Counter()
    bits: Counter[tuple[str, int]] = Counter()
    for container in phv.get("containers", []):
        key = (str(container.get("container_type")), int(container.get("bit_width", 0)))
        containers[key] += 1
        used = set()
        for piece in container.get("slices", []):
            info = piece.get("slice_info", {})
            used.update(range(info.get("lsb", 0), info.get("msb", -1) + 1))
        bits[key] += len(used)
    return {"containers": [{"kind": kind, "bits": width, "count": containers[(kind, width)],
                            "bits_used": bits[(kind, width)]} for kind, width in sorted(containers)],
            "containers_total": sum(containers.values())}


def summarize(context: dict, metrics: dict | None = None, target: str = "tofino", *,
              resources: dict | None = None, phv: dict | None = None) -> dict:
    chip = CHIPS[target]
    tables = context.get("tables", [])
    used: dict[str, set[int]] = {"ingress": set(), "egress": set()}
    salus: Counter[tuple[str, int]] = Counter()
    registers = []
    for table in tables:
        gress = _gress(table)
        stages = _stages(table)
        used.setdefault(gress, set()).update(stages)
        if table.get("table_type") == "stateful":
            for stage in stages:
                salus[(gress, stage)] += 1
            registers.append({"name": table.get("name"), "gress": gress, "stages": stages,
                              "size": table.get("size"), "width": table.get("alu_width")})
    per_stage: Counter[int] = Counter()
    for (_, stage), n in salus.items():
        per_stage[stage] += n
    summary: dict = {
        "program": "p4src/tna/tna.p4",
        "target": target,
        "stages": {"available": chip.stages,
                   # "used": the stages a gress's packets pass through, up to its last table (the compiler's "Number of
                   # stages for <gress> table allocation"), though some before it may hold none of its tables.
                   **{gress: {"used": max(stages) + 1 if stages else 0, "numbers": sorted(stages)}
                      for gress, stages in used.items()}},
        "stateful_alus": {
            # NOTE: a stage's four stateful ALUs serve its ingress and egress tables together, so the chip's
            # total (stages x 4) bounds both gresses' sum, and no stage may hold more than four.
            "available": chip.stages * chip.salus_per_stage,
            "per_stage": chip.salus_per_stage,
            **{gress: sum(n for (g, _), n in salus.items() if g == gress) for gress in used},
            "total": sum(salus.values()),
            "by_stage": [{"gress": gress, "stage": stage, "count": n} for (gress, stage), n in sorted(salus.items())],
        },
        "registers": sorted(registers, key=lambda r: (r["gress"], r["stages"], str(r["name"]))),
    }
    if metrics:
        mau = metrics.get("mau", {})
        summary["memories"] = {
            "sram": {"used": mau.get("srams"), "available": chip.stages * chip.srams_per_stage},
            "map_ram": {"used": mau.get("map_rams"), "available": chip.stages * chip.map_rams_per_stage},
            "tcam": {"used": mau.get("tcams"), "available": chip.stages * chip.tcams_per_stage},
            "logical_tables": mau.get("logical_tables"),
        }
        summary["phv"] = metrics.get("phv", {})
    if resources:
        summary["memories"] = _memories(resources, chip)
    if phv:
        summary["phv"] = _phv(phv)
    summary["over_limits"] = over_limits(summary)
    return summary


def over_limits(summary: dict) -> list[str]:
    """Why the compile does not fit its target (empty if it does): a gress using more stages, or a stage more
    stateful ALUs, than the chip has."""
    problems = []
    available = summary["stages"]["available"]
    for gress in ("ingress", "egress"):
        numbers = summary["stages"].get(gress, {}).get("numbers", [])
        if numbers and max(numbers) >= available:
            problems.append(f"{gress} uses {max(numbers) + 1} stages, {summary['target']} has {available}")
    salus = summary["stateful_alus"]
    per_stage: Counter[int] = Counter()
    for entry in salus["by_stage"]:
        per_stage[entry["stage"]] += entry["count"]
    for stage, count in sorted(per_stage.items()):
        if count > salus["per_stage"]:
            problems.append(f"stage {stage} holds {count} stateful ALUs, {summary['target']} has {salus['per_stage']}")
    if salus["total"] > salus["available"]:
        problems.append(f"{salus['total']} stateful ALUs in all, {summary['target']} has {salus['available']}")
    return problems


class DoesNotFit(Exception):
    """The compile uses more of the target than it has; nothing is recorded."""


def _load(path: Path | None) -> dict | None:
    return json.loads(path.read_text()) if path else None


def record(out: Path, compiler: str, target: str = "tofino") -> dict:
    context_path = _find(out, "context.json")
    bfrt_path = _find(out, "bf-rt.json")
    if context_path is None or bfrt_path is None:
        raise FileNotFoundError(f"{out} holds no context.json and bf-rt.json: did the compile succeed?")
    summary = summarize(json.loads(context_path.read_text()), _load(_find(out, "metrics.json")), target,
                        resources=_load(_find(out, "resources.json")), phv=_load(_find(out, "phv.json")))
    if summary["over_limits"]:
        raise DoesNotFit("; ".join(summary["over_limits"]))
    del summary["over_limits"]
    summary["compiler"] = compiler
    build = artifacts.BUILDS[target]
    build.folder.mkdir(parents=True, exist_ok=True)
    build.resources.write_text(json.dumps(summary, indent=1) + "\n")
    # NOTE: the copies are the same JSON without the compiler's indentation (context.json: 8.6 MB -> 3.8 MB).
    for source, copy in ((context_path, build.context_json), (bfrt_path, build.bfrt_json)):
        copy.write_text(json.dumps(json.loads(source.read_text()), separators=(",", ":")) + "\n")
    build.sources_digest.write_text(f"{artifacts.sources_digest()}  p4src/tna, compiled by {compiler} "
                                    f"(--target {target})\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the compiler's output folder")
    parser.add_argument("--compiler", required=True, help="the compiler's version line, recorded with the digest")
    parser.add_argument("--target", choices=sorted(CHIPS), default="tofino")
    args = parser.parse_args(argv)
    try:
        summary = record(args.out, args.compiler, args.target)
    except DoesNotFit as error:
        print(f"error: the compile in {args.out} does not fit {args.target}: {error}; "
              f"{artifacts.BUILDS[args.target].folder} is left as it was", file=sys.stderr)
        return 1
    stages, salus = summary["stages"], summary["stateful_alus"]
    print(f"stages used: ingress {stages.get('ingress', {}).get('used')}, egress {stages.get('egress', {}).get('used')}"
          f" of {stages['available']}; stateful ALUs: ingress {salus.get('ingress')}, egress {salus.get('egress')}"
          f" ({salus['total']} of {salus['available']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
