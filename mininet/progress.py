"""Live progress of a run: the agents' progress files (host/progress.py's JSON lines), read while they run.

Each agent appends a line to `<logs>/<worker>.progress` a few times a second (`--progress-file`); `ProgressTail`
reads what was added since its last look and keeps each worker's latest line. `RunProgress` adds them up for the
whole run, and `run_testbed(config, progress=callback)` calls the callback with one every `PROGRESS_TICK_S` while
the agents run (the CLI draws a bar or writes log lines from it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

#: How often the runner reads the progress files and calls its progress callback.
PROGRESS_TICK_S = 0.25
#: The host agent's progress line format this reader understands (host/progress.py PROGRESS_FORMAT).
PROGRESS_FORMAT = 1


@dataclass(frozen=True, slots=True)
class RunProgress:
    """The run so far: data blocks all-reduced over every worker of every job, against the total; packets sent by
    the agents; how many agents have reported (started) and finished; seconds since the agents were started."""

    blocks_done: int
    blocks_total: int
    packets_sent: int
    retransmissions: int
    agents_started: int
    agents_done: int
    agents: int
    elapsed_s: float
    #: what the run is doing: a set-up step ("starting the switch", ...) or ALL_REDUCE while the agents run
    phase: str = "all-reduce"

    @classmethod
    def step(cls, phase: str, blocks_total: int, agents: int) -> "RunProgress":
        """A set-up or closing step, with nothing all-reduced yet (or still to be read)."""
        return cls(0, blocks_total, 0, 0, 0, 0, agents, 0.0, phase)

    @property
    def fraction(self) -> float:
        return self.blocks_done / self.blocks_total if self.blocks_total else 1.0


ProgressCallback = Callable[[RunProgress], None]

#: The phase of RunProgress while the agents run.
ALL_REDUCE = "all-reduce"


def report_step(progress: ProgressCallback | None, phase: str, config_blocks: int, agents: int) -> None:
    """Tell `progress` (if any) that the run entered a set-up or closing step."""
    if progress is not None:
        progress(RunProgress.step(phase, config_blocks, agents))


@dataclass(slots=True)
class _Tail:
    path: Path
    offset: int = 0
    pending: bytes = b""
    latest: dict[str, Any] | None = None


@dataclass(slots=True)
class ProgressTail:
    """Reads the progress files of `agents` ({name: path}) incrementally; `blocks_per_agent` is each agent's total."""

    paths: Mapping[str, Path]
    blocks_per_agent: int
    _tails: dict[str, _Tail] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tails = {name: _Tail(path) for name, path in self.paths.items()}

    def poll(self, elapsed_s: float) -> RunProgress:
        """Read what every agent added since the last call; the run's progress."""
        for tail in self._tails.values():
            self._read(tail)
        latest = [tail.latest for tail in self._tails.values() if tail.latest is not None]
        return RunProgress(
            blocks_done=sum(int(line.get("blocks_done", 0)) for line in latest),
            blocks_total=self.blocks_per_agent * len(self._tails),
            packets_sent=sum(int(line.get("packets_sent", 0)) for line in latest),
            retransmissions=sum(int(line.get("retransmissions", 0)) for line in latest),
            agents_started=len(latest),
            agents_done=sum(1 for line in latest if line.get("event") == "done"),
            agents=len(self._tails),
            elapsed_s=elapsed_s,
        )

    @staticmethod
    def _read(tail: _Tail) -> None:
        try:
            with tail.path.open("rb") as stream:
                stream.seek(tail.offset)
                chunk = stream.read()
        except FileNotFoundError:
            return  # the agent has not started writing yet
        except OSError as error:
            log.debug("cannot read %s: %s", tail.path, error)
            return
        tail.offset += len(chunk)
        data = tail.pending + chunk
        *lines, tail.pending = data.split(b"\n")  # the last piece is a line still being written
        for raw in reversed(lines):
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("format") == PROGRESS_FORMAT:
                tail.latest = line
                break
