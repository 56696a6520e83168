"""How many of p4c's own v1model test programs the softswitch runs as their STF scripts say (a developer tool).

    python -m omnireduce.bench.stf_conformance                     # both backends, every program
    python -m omnireduce.bench.stf_conformance --bmv2              # and BMv2's simple_switch beside them
    python -m omnireduce.bench.stf_conformance -k stack -v         # programs whose name holds "stack", with details
    python -m omnireduce.bench.stf_conformance --json-out out.json

Every `*.p4` of p4c's testdata/p4_16_samples that includes v1model.p4 and has an `.stf` beside it is compiled
with p4c-bm2-ss (JSON and P4Info, cached under --work-dir by the source's digest and p4c's version: nothing of
p4c's is written into this repository). Each compiled program is then loaded as SetForwardingPipelineConfig
would load it (the P4Info checked against the JSON, then the JSON compiled by the Device) on the Python and the
native pipeline, each in a child process of its own (a crash is a result, not the end of the run), and its STF
is run: table entries, multicast groups and clone sessions, then packets in, frames out compared with the
expectations on every port the STF names (bench/stf.py). With --bmv2 the same STF runs on simple_switch
(bench/stf_bmv2.py), so the report tells apart what the softswitch gets wrong from what BMv2 fails too, and
compares the frames themselves.

This needs p4c-bm2-ss and p4c's sources (for the samples), so it is not part of the test suite; the construct
tests of tests/softswitch are. Exit status: 0 when every program that BMv2 passes (all of them, without --bmv2)
loads and passes on both backends, 1 otherwise, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_SAMPLES = Path("/opt/p4build/p4c/testdata/p4_16_samples")
BACKENDS = ("python", "native")
V1MODEL_INCLUDE = re.compile(r"#include\s*[<\"].*v1model\.p4[>\"]")
CHILD_TIMEOUT = 300


@dataclass(slots=True)
class Sample:
    name: str
    source: Path
    stf: Path
    json: Path | None = None
    p4info: Path | None = None
    compile_error: str | None = None


@dataclass(slots=True)
class BackendResult:
    loaded: bool = False
    passed: bool = False
    error: str | None = None  # why it did not load, or what differed
    backend: str | None = None  # the pipeline that ran
    outputs: dict[str, list[str]] = field(default_factory=dict)  # port -> frames out, hex


@dataclass(slots=True)
class SampleResult:
    name: str
    compiled: bool
    compile_error: str | None
    backends: dict[str, BackendResult] = field(default_factory=dict)
    bmv2: BackendResult | None = None

    def same_as_bmv2(self, backend: str) -> bool | None:
        ours = self.backends.get(backend)
        if self.bmv2 is None or not self.bmv2.loaded or ours is None or not ours.loaded:
            return None
        return ours.outputs == self.bmv2.outputs


# -- discovery and compilation -------------------------------------------------------------------------------------

def discover(samples: Path, patterns: list[str] | None) -> list[Sample]:
    found = []
    for stf in sorted(samples.glob("*.stf")):
        source = stf.with_suffix(".p4")
        if not source.exists() or (patterns and not any(p in stf.stem for p in patterns)):
            continue
        if V1MODEL_INCLUDE.search(source.read_text(errors="replace")):
            found.append(Sample(stf.stem, source, stf))
    return found


def p4c_version(p4c: str) -> str:
    done = subprocess.run([p4c, "--version"], capture_output=True, text=True)
    return (done.stdout + done.stderr).strip().splitlines()[-1] if done.returncode == 0 else "unknown"


def compile_sample(sample: Sample, p4c: str, version: str, work: Path) -> None:
    """JSON and P4Info of the sample under work/NAME/, recompiled only when the source or p4c changed."""
    out = work / sample.name
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(sample.source.read_bytes() + version.encode()).hexdigest()
    stamp, json_path, p4info = out / "digest", out / f"{sample.name}.json", out / f"{sample.name}.p4info.txt"
    if stamp.exists() and stamp.read_text().split("\n")[0] == digest:
        recorded = stamp.read_text().split("\n", 1)[1]
        if recorded:
            sample.compile_error = recorded
        else:
            sample.json, sample.p4info = json_path, p4info
        return
    done = subprocess.run([p4c, "-o", str(json_path), "--p4runtime-files", str(p4info), str(sample.source)],
                          capture_output=True, text=True, cwd=out)
    if done.returncode != 0 or not json_path.exists():
        lines = [line for line in (done.stderr + done.stdout).splitlines() if "error" in line.lower()]
        sample.compile_error = (lines[0] if lines else (done.stderr + done.stdout).strip()[-200:]) or "p4c failed"
        stamp.write_text(digest + "\n" + sample.compile_error)
        return
    sample.json, sample.p4info = json_path, (p4info if p4info.exists() else None)
    stamp.write_text(digest + "\n")


# -- one program on one backend, in a child process ----------------------------------------------------------------

def run_one(json_path: Path, stf_path: Path, p4info_path: Path | None, backend: str) -> BackendResult:
    """Load the program (P4Info checked against the JSON first, as SetForwardingPipelineConfig does) and run
    its STF. Runs in the child process."""
    import logging

    from omnireduce.softswitch.device import Device
    from omnireduce.softswitch.errors import DeviceError

    from .stf import StfError, parse_stf, run_on_device

    logging.disable(logging.WARNING)
    result = BackendResult()
    program_bytes = json_path.read_bytes()
    program = json.loads(program_bytes)
    try:
        if p4info_path is not None:
            from omnireduce.softswitch.p4runtime.errors import P4RuntimeError
            from omnireduce.softswitch.p4runtime.p4info_map import P4InfoMap, load_p4info
            from omnireduce.softswitch.p4runtime.pipeline_check import check_p4info_matches_json

            try:
                check_p4info_matches_json(P4InfoMap(load_p4info(p4info_path)), program)
            except P4RuntimeError as error:
                result.error = f"P4Info: {error}"
                return result
        device = Device(name=json_path.stem, backend=backend)
        device.load_pipeline(program_bytes)
    except DeviceError as error:
        result.error = str(error)
        return result
    result.loaded = True
    result.backend = device.backend
    try:
        outputs, problems = run_on_device(device, program, parse_stf(stf_path))
    except (StfError, DeviceError) as error:
        result.error = f"STF: {error}"
        return result
    result.outputs = {str(port): [frame.hex() for frame in frames] for port, frames in sorted(outputs.items())}
    result.passed = not problems
    result.error = "; ".join(problems[:3]) or None
    return result


def _child(sample: Sample, backend: str) -> BackendResult:
    argv = [sys.executable, "-m", "omnireduce.bench.stf_conformance", "--run-one", str(sample.json), str(sample.stf),
            "--backend", backend]
    if sample.p4info is not None:
        argv += ["--p4info", str(sample.p4info)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return BackendResult(error=f"timed out after {CHILD_TIMEOUT} s")
    if done.returncode != 0:
        return BackendResult(error=f"child process failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return BackendResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def _bmv2(sample: Sample, simple_switch: str, cli: str) -> BackendResult:
    from .bmv2_replay import Bmv2Error
    from .stf import StfError, parse_stf
    from .stf_bmv2 import run_on_bmv2

    program = json.loads(sample.json.read_bytes())
    try:
        outputs, problems = run_on_bmv2(sample.json, program, parse_stf(sample.stf), simple_switch, cli)
    except (Bmv2Error, StfError, subprocess.TimeoutExpired) as error:
        return BackendResult(error=f"BMv2: {error}")
    return BackendResult(loaded=True, passed=not problems, error="; ".join(problems[:3]) or None, backend="bmv2",
                         outputs={str(p): [f.hex() for f in frames] for p, frames in sorted(outputs.items())})


# -- the report ----------------------------------------------------------------------------------------------------

def _reason(error: str | None) -> str:
    """A refusal's message with names and numbers taken out, to group programs by why they failed."""
    if not error:
        return "?"
    text = re.sub(r"'[^']*'", "'…'", error)
    text = re.sub(r"\([^)]*\)", "(…)", text)
    text = re.sub(r"0x[0-9a-f]+|\b[0-9]+\b", "N", text)
    return text[:150]


def report(results: list[SampleResult], backends: tuple[str, ...], verbose: bool, with_bmv2: bool) -> list[str]:
    lines = []
    compiled = [r for r in results if r.compiled]
    lines.append(f"{len(results)} v1model programs with an STF; {len(compiled)} compile with p4c-bm2-ss")
    if with_bmv2:
        bmv2_pass = [r for r in compiled if r.bmv2 and r.bmv2.passed]
        lines.append(f"BMv2 simple_switch passes {len(bmv2_pass)} of {len(compiled)}")
    for backend in backends:
        loaded = [r for r in compiled if r.backends[backend].loaded]
        passed = [r for r in loaded if r.backends[backend].passed]
        text = f"{backend:7s} loads {len(loaded)} of {len(compiled)}, passes {len(passed)}"
        if backend == "native":
            ran_native = sum(1 for r in loaded if r.backends[backend].backend == "native")
            text += f" ({ran_native} ran as C)"
        if with_bmv2:
            both = [r for r in compiled if r.bmv2 and r.bmv2.passed]
            ok = [r for r in both if r.backends[backend].passed]
            same = [r for r in compiled if r.same_as_bmv2(backend)]
            text += (f"; of BMv2's {len(both)} passes {len(ok)}; same frames as BMv2 on "
                     f"{len(same)} of {sum(1 for r in compiled if r.same_as_bmv2(backend) is not None)}")
        lines.append(text)
        reasons = Counter(_reason(r.backends[backend].error) for r in compiled if not r.backends[backend].loaded)
        for reason, count in reasons.most_common():
            lines.append(f"    refused {count:3d}: {reason}")
    lines.append("")
    for r in results:
        if not r.compiled:
            if verbose:
                lines.append(f"{r.name}: does not compile: {r.compile_error}")
            continue
        states = []
        for backend in backends:
            b = r.backends[backend]
            states.append(f"{backend} {'pass' if b.passed else 'FAIL' if b.loaded else 'refused'}")
        if with_bmv2 and r.bmv2 is not None:
            states.append(f"bmv2 {'pass' if r.bmv2.passed else 'FAIL' if r.bmv2.loaded else 'error'}")
        all_ok = all(r.backends[b].passed for b in backends)
        if verbose or not all_ok:
            lines.append(f"{r.name}: {', '.join(states)}")
            for backend in backends:
                b = r.backends[backend]
                if b.error and not b.passed:
                    lines.append(f"    {backend}: {b.error[:300]}")
            if with_bmv2 and r.bmv2 is not None and not r.bmv2.passed and r.bmv2.error:
                lines.append(f"    bmv2: {r.bmv2.error[:300]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES, help="p4c's testdata/p4_16_samples")
    parser.add_argument("--p4c", default="p4c-bm2-ss", help="the p4c BMv2 compiler (default: p4c-bm2-ss on PATH)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "omnireduce" / "stf-conformance"
    parser.add_argument("--work-dir", type=Path, default=cache, help=f"compiled programs (default {cache})")
    parser.add_argument("-k", dest="patterns", action="append", help="only programs whose name contains this "
                        "(repeatable: any of them)")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="programs run at once")
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="softswitch pipelines (default both)")
    parser.add_argument("--bmv2", action="store_true", help="also run each STF on simple_switch and compare")
    parser.add_argument("--json-out", type=Path, help="write every result as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per program, passing or not")
    parser.add_argument("--run-one", nargs=2, type=Path, metavar=("JSON", "STF"), help=argparse.SUPPRESS)
    parser.add_argument("--p4info", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_one:
        result = run_one(args.run_one[0], args.run_one[1], args.p4info, (args.backend or ["python"])[0])
        print(json.dumps(asdict(result)))
        return 0

    backends = tuple(args.backend or BACKENDS)
    if not args.samples.is_dir():
        parser.error(f"--samples {args.samples} is not a directory (p4c's testdata/p4_16_samples)")
    simple_switch = cli = None
    if args.bmv2:
        from .stf_bmv2 import bmv2_tools

        simple_switch, cli = bmv2_tools()
        if not simple_switch or not cli:
            parser.error("--bmv2: simple_switch and simple_switch_CLI must be on PATH")
    started = time.monotonic()
    samples = discover(args.samples, args.patterns)
    version = p4c_version(args.p4c)
    print(f"stf: {len(samples)} programs, compiling with {args.p4c} ({version}) into {args.work_dir}", file=sys.stderr)
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda s: compile_sample(s, args.p4c, version, args.work_dir), samples))
    results = {s.name: SampleResult(s.name, s.json is not None, s.compile_error) for s in samples}
    runnable = [s for s in samples if s.json is not None]
    print(f"stf: running {len(runnable)} programs on {', '.join(backends)}{' and BMv2' if args.bmv2 else ''}",
          file=sys.stderr)
    with ThreadPoolExecutor(args.jobs) as pool:
        jobs = {(s.name, b): pool.submit(_child, s, b) for s in runnable for b in backends}
        bmv2_jobs = {s.name: pool.submit(_bmv2, s, simple_switch, cli) for s in runnable} if args.bmv2 else {}
        for (name, backend), job in jobs.items():
            results[name].backends[backend] = job.result()
        for name, job in bmv2_jobs.items():
            results[name].bmv2 = job.result()
    lines = report(list(results.values()), backends, args.verbose, args.bmv2)
    print("\n".join(lines))
    print(f"stf: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json_out:
        args.json_out.write_text(json.dumps([asdict(r) for r in results.values()], indent=1) + "\n")
    target = [r for r in results.values() if r.compiled and (not args.bmv2 or (r.bmv2 and r.bmv2.passed))]
    return 0 if all(r.backends[b].passed for r in target for b in backends) else 1


if __name__ == "__main__":
    sys.exit(main())
