"""Where the compiled omnireduce program lives, and whether it matches its sources.

p4src/build/ holds what p4c-bm2-ss made of p4src/ (the BMv2 JSON and the P4Info, text format) and
``SOURCES.sha256``: the digest of every P4 source it was compiled from. Tests compare that digest with the sources
so a change to the P4 code without `make p4` fails CI, where no p4c is installed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

P4SRC = Path(__file__).resolve().parent
BUILD = P4SRC / "build"
PROGRAM = P4SRC / "omnireduce.p4"
BMV2_JSON = BUILD / "omnireduce.json"
P4INFO = BUILD / "omnireduce.p4info.txtpb"
SOURCES_DIGEST = BUILD / "SOURCES.sha256"


def p4_sources(root: Path = P4SRC) -> list[Path]:
    """Every P4 file the program is compiled from, in a stable order (the Tofino program under tna/ has its own
    build and digest: omnireduce.p4src.tna.artifacts)."""
    return sorted(path for path in root.rglob("*.p4")
                  if BUILD not in path.parents and root / "tna" not in path.parents)


def sources_digest(root: Path = P4SRC) -> str:
    """sha256 over the relative path and content of every P4 source."""
    digest = hashlib.sha256()
    for path in p4_sources(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def recorded_digest() -> str:
    """The digest written when p4src/build/ was last compiled (first word of SOURCES.sha256)."""
    return SOURCES_DIGEST.read_text().split()[0]
