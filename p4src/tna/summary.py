"""Record a Tofino compile of p4src/tna/tna.p4 in p4src/tna/build/ (the last step of `make tofino`).

Reads the compiler's output folder (``-o`` of the p4c driver with ``--target tofino --arch tna``): ``context.json``
(every table and stateful table, its gress and its stages), ``metrics.json`` (memories and PHV in use) and the
BF Runtime JSON. Writes:

- ``build/resources.json``: the summary the issue asks for -- stages used of the chip's, per gress; stateful ALUs
  used per gress and stage (Tofino: four a stage); SRAM, map RAM and TCAM blocks; PHV containers; each register's
  stage and size;
- ``build/context.json`` and ``build/bf-rt.json``: copies (what the driver and a BF Runtime server load);
- ``build/SOURCES.sha256``: the digest of the sources compiled, and the compiler's version.

Run ``python -m omnireduce.p4src.tna.summary OUT --compiler "$(p4c --version)"``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from omnireduce.p4src.tna import artifacts


@dataclass(frozen=True, slots=True)
class Chip:
    """What one pipe of a Tofino generation has (Tofino 1: 12 stages of 4 stateful ALUs, 80 SRAM, 48 map RAM and
    24 TCAM blocks each)."""

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


def summarize(context: dict, metrics: dict | None, target: str = "tofino") -> dict:
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
    summary: dict = {
        "program": "p4src/tna/tna.p4",
        "target": target,
        "stages": {"available": chip.stages,
                   **{gress: {"used": len(stages), "numbers": sorted(stages)} for gress, stages in used.items()}},
        "stateful_alus": {
            "available_per_gress": chip.stages * chip.salus_per_stage,
            **{gress: sum(n for (g, _), n in salus.items() if g == gress) for gress in used},
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
    return summary


def record(out: Path, compiler: str, target: str = "tofino") -> dict:
    context_path = _find(out, "context.json")
    bfrt_path = _find(out, "bf-rt.json")
    if context_path is None or bfrt_path is None:
        raise FileNotFoundError(f"{out} holds no context.json and bf-rt.json: did the compile succeed?")
    metrics_path = _find(out, "metrics.json")
    summary = summarize(json.loads(context_path.read_text()),
                        json.loads(metrics_path.read_text()) if metrics_path else None, target)
    summary["compiler"] = compiler
    artifacts.BUILD.mkdir(parents=True, exist_ok=True)
    artifacts.RESOURCES.write_text(json.dumps(summary, indent=1) + "\n")
    shutil.copyfile(context_path, artifacts.CONTEXT_JSON)
    shutil.copyfile(bfrt_path, artifacts.BFRT_JSON)
    artifacts.SOURCES_DIGEST.write_text(f"{artifacts.sources_digest()}  p4src/tna, compiled by {compiler}\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the compiler's output folder")
    parser.add_argument("--compiler", required=True, help="the compiler's version line, recorded with the digest")
    parser.add_argument("--target", choices=sorted(CHIPS), default="tofino")
    args = parser.parse_args(argv)
    summary = record(args.out, args.compiler, args.target)
    stages, salus = summary["stages"], summary["stateful_alus"]
    print(f"stages used: ingress {stages.get('ingress', {}).get('used')}, egress {stages.get('egress', {}).get('used')}"
          f" of {stages['available']}; stateful ALUs: ingress {salus.get('ingress')}, egress {salus.get('egress')}"
          f" of {salus['available_per_gress']} each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
