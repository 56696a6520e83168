"""An agent's progress, as the CLI shows it: a bar on a terminal, and JSON lines for a supervising process.

`AllReduce(config, progress=callback)` calls `callback(fraction)` a few times a second while a data tensor is
exchanged. `ProgressTracker` turns those calls into `ProgressSnapshot`s (blocks done over every `--repeat`, packets,
retransmissions) and hands them to its sinks:

- `ProgressFile`: one JSON object per line, appended to a file and flushed at once, so that another process (the
  testbed runner, `omnireduce.testbed.progress`) can tail it while the agent runs. The format (`PROGRESS_FORMAT`):

      {"format": 1, "event": "start"|"progress"|"done", "job": 1, "worker_id": 0, "run": 1, "runs": 2,
       "blocks_done": 1234, "blocks_total": 62500, "packets_sent": 1300, "packets_received": 1290,
       "retransmissions": 0, "elapsed_s": 0.84}

  `blocks_done`/`blocks_total` count data blocks over all runs (`runs` = --repeat; `run` is the one under way,
  1-based); packets and retransmissions are this process's totals so far; `elapsed_s` counts from the agent's
  start. "start" is written once the tensor is loaded (before the workers meet), "done" when the last run ended
  well. A reader must ignore unknown keys and a last line without its newline (it is still being written).
- `ProgressBar`: a tqdm bar on stderr (blocks, packets/s, ETA), drawn only on a terminal.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol, TextIO

from tqdm import tqdm

log = logging.getLogger(__name__)

#: Version of the progress line format; a reader skips lines of another version.
PROGRESS_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Where one agent is: see the module docstring for the meaning of each field."""

    event: str
    job: int
    worker_id: int
    run: int
    runs: int
    blocks_done: int
    blocks_total: int
    packets_sent: int
    packets_received: int
    retransmissions: int
    elapsed_s: float

    def to_json(self) -> str:
        return json.dumps({"format": PROGRESS_FORMAT, **asdict(self)}, separators=(",", ":"))


class ProgressSink(Protocol):
    def update(self, snapshot: ProgressSnapshot) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Counts:
    """Packet counts so far (the tracker asks for them on each update)."""

    packets_sent: int = 0
    packets_received: int = 0
    retransmissions: int = 0


class ProgressTracker:
    """Adapts AllReduce's `progress(fraction)` calls to snapshots over `runs` all-reduces of `blocks` blocks.

    `counts` returns the packet counts so far (the agent's running stats); call `next_run()` before each
    all-reduce, `finish()` after the last one succeeded, and `close()` in every case.
    """

    def __init__(self, *, job: int, worker_id: int, blocks: int, runs: int, sinks: list[ProgressSink],
                 counts: Callable[[], Counts] = Counts) -> None:
        self._job, self._worker_id, self._blocks, self._runs = job, worker_id, blocks, runs
        self._sinks = sinks
        self.counts = counts
        self._run = 0
        self._started = time.monotonic()

    def _snapshot(self, event: str, fraction: float) -> ProgressSnapshot:
        counts = self.counts()
        done_runs = max(0, self._run - 1)
        blocks_done = done_runs * self._blocks + int(fraction * self._blocks)
        return ProgressSnapshot(event, self._job, self._worker_id, max(1, self._run), self._runs, blocks_done,
                                self._blocks * self._runs, counts.packets_sent, counts.packets_received,
                                counts.retransmissions, round(time.monotonic() - self._started, 3))

    def _emit(self, snapshot: ProgressSnapshot) -> None:
        for sink in self._sinks:
            sink.update(snapshot)

    def start(self) -> None:
        self._emit(self._snapshot("start", 0.0))

    def next_run(self) -> None:
        self._run += 1

    def __call__(self, fraction: float) -> None:
        self._emit(self._snapshot("progress", fraction))

    def finish(self) -> None:
        self._emit(self._snapshot("done", 1.0))

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()


class ProgressFile:
    """Appends snapshots as JSON lines to `path` (see the module docstring), each flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream: TextIO | None = path.open("a", encoding="utf-8")

    def update(self, snapshot: ProgressSnapshot) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(snapshot.to_json() + "\n")
            self._stream.flush()
        except OSError as error:  # a full disk must not fail the all-reduce
            log.warning("cannot write progress to %s: %s; no more progress lines", self.path, error)
            self.close()

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass
            self._stream = None


class ProgressBar:
    """A tqdm bar: blocks done of all runs, packets/s sent, retransmissions, ETA. Draw it only on a terminal."""

    def __init__(self, stream: TextIO, description: str) -> None:
        self._stream = stream
        self._description = description
        self._bar: tqdm | None = None
        self._last_packets = 0
        self._last_time = 0.0
        self._rate = 0.0

    def update(self, snapshot: ProgressSnapshot) -> None:
        if self._bar is None:
            self._bar = tqdm(total=snapshot.blocks_total, unit="block", unit_scale=True, file=self._stream,
                             desc=self._description, dynamic_ncols=True, mininterval=0.2, leave=True)
        if snapshot.elapsed_s - self._last_time >= 0.5:
            self._rate = (snapshot.packets_sent - self._last_packets) / (snapshot.elapsed_s - self._last_time)
            self._last_packets, self._last_time = snapshot.packets_sent, snapshot.elapsed_s
        self._bar.set_postfix_str(f"{packets_per_second(self._rate)}, {snapshot.retransmissions} "
                                  f"{plural(snapshot.retransmissions, 'retransmission')}", refresh=False)
        self._bar.update(snapshot.blocks_done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def plural(count: int, word: str) -> str:
    """'retransmission' for 1, 'retransmissions' otherwise."""
    return word if count == 1 else word + "s"


def packets_per_second(rate: float) -> str:
    return f"{rate:,.0f} packets/s" if math.isfinite(rate) else "? packets/s"
