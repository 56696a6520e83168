"""Where the compiled Tofino program lives, and whether it matches its sources.

p4src/tna/build/ (Tofino 1) and p4src/tna/build-t2/ (Tofino 2) hold what the open Tofino compiler (p4c-barefoot
and bfas, p4lang/p4c with ENABLE_TOFINO) made of p4src/tna/tna.p4: the resource summary (``resources.json``,
written by ``summarize``), the context and BF Runtime JSON, and ``SOURCES.sha256``: the digest of every P4 file the
program includes (its own and the shared wire format of p4src/include/). Tests compare that digest with the
sources, so a change to the P4 code without ``make tofino`` (or ``make tofino2``) fails CI, where no Tofino
compiler is installed. Until a first build of a target is recorded there is no digest, and its test says so
instead of failing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

TNA = Path(__file__).resolve().parent
P4SRC = TNA.parent
PROGRAM = TNA / "tna.p4"


@dataclass(frozen=True, slots=True)
class Build:
    """The recorded compile of the program for one target: its folder and the files in it."""

    target: str
    folder: Path

    @property
    def sources_digest(self) -> Path:
        return self.folder / "SOURCES.sha256"

    @property
    def resources(self) -> Path:
        return self.folder / "resources.json"

    @property
    def context_json(self) -> Path:
        return self.folder / "context.json"

    @property
    def bfrt_json(self) -> Path:
        return self.folder / "bf-rt.json"

    def recorded_digest(self) -> str | None:
        """The digest written when this build was last compiled, or None if it never was."""
        if not self.sources_digest.exists():
            return None
        return self.sources_digest.read_text().split()[0]


# One folder per target: `make tofino` (--target tofino --arch tna) and `make tofino2` (--target tofino2 --arch t2na)
# compile the same source (tna.p4 picks its architecture from __TARGET_TOFINO__).
BUILDS = {"tofino": Build("tofino", TNA / "build"), "tofino2": Build("tofino2", TNA / "build-t2")}
BUILD = BUILDS["tofino"].folder
SOURCES_DIGEST = BUILDS["tofino"].sources_digest
RESOURCES = BUILDS["tofino"].resources
CONTEXT_JSON = BUILDS["tofino"].context_json
BFRT_JSON = BUILDS["tofino"].bfrt_json

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def p4_sources(program: Path = PROGRAM) -> list[Path]:
    """Every P4 file `program` includes with #include "..." (transitively), itself too, in a stable order.

    NOTE: found by following the includes rather than by globbing a folder, because the program shares files with
    the v1model program (p4src/include/) and must see a change to exactly those."""
    seen: set[Path] = set()
    pending = [program.resolve()]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _INCLUDE.findall(path.read_text()):
            included = (path.parent / name).resolve()
            if not included.exists():
                raise FileNotFoundError(f"{path.relative_to(P4SRC)} includes {name}, which does not exist")
            pending.append(included)
    return sorted(seen)


def sources_digest(program: Path = PROGRAM, root: Path = P4SRC) -> str:
    """sha256 over the path (relative to `root`) and content of every P4 source of `program`."""
    digest = hashlib.sha256()
    for path in p4_sources(program):
        digest.update(path.relative_to(root.resolve()).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def recorded_digest(target: str = "tofino") -> str | None:
    """The digest written when the target's build folder was last compiled, or None if it never was."""
    return BUILDS[target].recorded_digest()
