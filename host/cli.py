"""omnireduce-agent: all-reduce one tensor (or a synthetic one) through an omnireduce switch, as one worker.

Run one instance per worker of the job, with the same --job, --workers, --slots and tensor length everywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np

from omnireduce import argtypes
from omnireduce.clierrors import JsonArgumentParser, json_usage_errors, wants_json
from omnireduce.p4src import constants as C

from .agent import AllReduce
from .config import AgentConfig, FrameLink, Pacing, Timeouts, TransportKind
from .errors import (
    AgentTimeout,
    InputError,
    JobMismatch,
    OverflowRisk,
    PeerRefused,
    ProtocolError,
    SwitchUnreachable,
)
from .blocks import block_count
from .progress import Counts, ProgressBar, ProgressFile, ProgressSink, ProgressTracker, plural
from .quantize import error_bound
from .stats import Stats
from .start_barrier import wait_at_barrier
from .synthetic import synthetic_sum, synthetic_tensor
from .wire import Endpoint, parse_mac

log = logging.getLogger("omnireduce.agent")

EXIT_OK = 0
EXIT_WRONG_RESULT = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3   # bad input here or on another worker, or the job's workers disagree (no data sent)
EXIT_NETWORK = 4   # switch unreachable, worker missing, stalled, deadline
EXIT_PROTOCOL = 5  # the switch answered against the protocol
#: What the JSON report's "calls" gives of each call (--repeat): its times and retransmissions; "stats" sums them.
CALL_FIELDS = ("elapsed_s", "joined_s", "exchange_s", "cpu_s", "retransmissions", "rendezvous_resends")

EPILOG = f"""
examples:
  # worker 0 of 2 on a Mininet host, synthetic tensor of 1M values with 1% non-zero blocks, checked locally:
  omnireduce-agent --switch 10.0.0.254 --job 1 --worker-id 0 --workers 2 --slots 64 \\
      --synthetic 1000000 --density 0.01 --seed 7 --verify
  # the same worker against the embedded softswitch, whose port 1 listens on 127.0.0.1:9001:
  omnireduce-agent --switch 10.0.0.254 --job 1 --worker-id 0 --workers 2 --slots 64 --synthetic 1000000 \\
      --transport frame --bind 127.0.0.1:9101 --frame-peer 127.0.0.1:9001 \\
      --worker-addr 10.0.0.1:{C.OMNI_UDP_PORT} --mac 02:00:00:00:00:01 --switch-mac 02:00:00:00:00:fe
  # the same through the switch's shared-memory port 1 (omnireduce-switch -i 1@shm:/dev/shm/or/port1):
  omnireduce-agent --switch 10.0.0.254 --job 1 --worker-id 0 --workers 2 --slots 64 --synthetic 1000000 \\
      --transport shm --ring /dev/shm/or/port1 \\
      --worker-addr 10.0.0.1:{C.OMNI_UDP_PORT} --mac 02:00:00:00:00:01 --switch-mac 02:00:00:00:00:fe

progress: on a terminal a bar on stderr shows blocks done, packets/s and the time left; --progress-file FILE
  appends one JSON line per update for a supervising process (format: host/README.md, "Progress lines").

errors: one line on stderr, `omnireduce-agent: error: <kind>: <what>, <why>, <what to do>`; with --json also in the
  JSON object on stdout ("ok": false, "error", "status": the exit code).

exit codes:
  {EXIT_OK}  done
  {EXIT_WRONG_RESULT}  --verify found a wrong result
  {EXIT_USAGE}  usage error (bad arguments)
  {EXIT_REFUSED}  refused, nothing sent or nothing aggregated: bad input here or on another worker (not a .npy file, a
     dtype other than float32/int32, NaN/Inf values), the workers disagree on the tensor or worker count, or an int32
     sum could overflow
  {EXIT_NETWORK}  switch unreachable, a worker never showed up, stalled (no result for --stall-timeout), deadline
  {EXIT_PROTOCOL}  the switch answered against the protocol (reset the job: omnireduce-ctl reset --job J)
"""


# The agent speaks IPv4 only; a port left out is the aggregation protocol's UDP port.
_endpoint = argtypes.host_port(default_port=C.OMNI_UDP_PORT, ipv4=True)
_mac = argtypes.from_parser(parse_mac)
_count = argtypes.integer(minimum=1)
_rate = argtypes.number(minimum=0.0, allow_minimum=False)


def build_parser() -> argparse.ArgumentParser:
    parser = JsonArgumentParser(
        prog="omnireduce-agent", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    job = parser.add_argument_group("job (identical on every worker, and as installed on the switch)")
    job.add_argument("--switch", required=True, type=_endpoint, metavar="IP[:PORT]",
                     help=f"the aggregator's IPv4 address (UDP port {C.OMNI_UDP_PORT} unless given)")
    job.add_argument("--job", required=True, type=int, help="job id (16 bits)")
    job.add_argument("--worker-id", required=True, type=int, help="this worker's id, 0 .. workers-1")
    job.add_argument("--workers", required=True, type=_count, help="number of workers W of the job")
    job.add_argument("--slots", required=True, type=_count,
                     help=f"the job's slot count S (packets in flight per worker, at most {C.SLOT_COUNT})")

    data = parser.add_argument_group("tensor")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, metavar="X.npy",
                        help="all-reduce this array, saved with numpy.save: float32 or int32, any shape (N-D arrays "
                             "are all-reduced as their flat values and keep their shape); convert float64 first")
    source.add_argument("--synthetic", type=_count, metavar="N",
                        help="all-reduce N generated values (see --density, --seed, --dtype)")
    data.add_argument("--density", type=argtypes.fraction, default=0.1,
                      help="synthetic: fraction of non-zero blocks (default 0.1)")
    data.add_argument("--seed", type=int, default=0, help="synthetic: seed, the same on every worker (default 0)")
    data.add_argument("--dtype", choices=("float32", "int32"), default="float32",
                      help="synthetic: value type (default float32)")
    data.add_argument("--output", type=Path, metavar="Y.npy", help="write the all-reduced tensor here")
    data.add_argument("--verify", action="store_true",
                      help="synthetic: regenerate every worker's tensor and check the result (exit 1 if wrong)")
    data.add_argument("--repeat", type=_count, default=1,
                      help="all-reduce the tensor this many times in a row (every worker alike; default 1)")
    data.add_argument("--start-barrier", type=Path, metavar="SOCKET",
                      help="once ready (input loaded, transport open), wait for the go of a launcher's start barrier "
                           "at this Unix socket before the first call, so that every agent it started begins in step "
                           "(host/start_barrier.py; the testbed does this); at most --join-timeout")

    mode = parser.add_argument_group("sending")
    mode.add_argument("--dense", action="store_true", help="send every block (SwitchML-style baseline)")
    mode.add_argument("--threshold", type=argtypes.number(minimum=0.0), metavar="T",
                      help="skip blocks whose largest magnitude is <= T (drops those small values from the sum)")
    mode.add_argument("--lookahead", type=_count, metavar="K",
                      help="send every K-th row of each column even when zero (bounds the next-block hint; "
                           "default: only non-zero blocks)")
    mode.add_argument("--max-burst", type=_count, help="first round: at most this many CONTRIBs outstanding")
    mode.add_argument("--pps", type=_rate, help="first round: at most this many CONTRIBs per second")
    mode.add_argument("--first-tensor-id", type=int, default=0,
                      help="tensor id of the first all-reduce (0 after the job is installed or reset)")

    limits = parser.add_argument_group("time limits (seconds)")
    defaults = Timeouts()
    limits.add_argument("--rto", type=argtypes.seconds, default=defaults.retransmit_initial,
                        help=f"smallest retransmission timeout once round trips are measured "
                             f"(default {defaults.retransmit_initial})")
    limits.add_argument("--rto-first", type=argtypes.seconds, default=defaults.retransmit_first,
                        help=f"retransmission timeout before any round trip is measured (default "
                             f"{defaults.retransmit_first})")
    limits.add_argument("--request-fallback", type=argtypes.seconds, default=defaults.request_fallback,
                        help=f"a worker that missed a result of a round it sat out, with no later result to show the "
                             f"gap, asks for it after this long (default {defaults.request_fallback})")
    limits.add_argument("--rto-max", type=argtypes.seconds, default=defaults.retransmit_max,
                        help=f"largest retransmission timeout (default {defaults.retransmit_max})")
    limits.add_argument("--backoff", type=argtypes.number(minimum=1.0), default=defaults.backoff,
                        help=f"retransmission timeout growth factor (default {defaults.backoff})")
    limits.add_argument("--join-timeout", type=argtypes.seconds, default=defaults.join,
                        help=f"every worker must show up within this (default {defaults.join})")
    limits.add_argument("--stall-timeout", type=argtypes.seconds, default=defaults.stall,
                        help=f"give up after this long without any result (default {defaults.stall})")
    limits.add_argument("--deadline", type=argtypes.seconds,
                        help="limit for each whole all-reduce (default: none; the join and stall limits still apply)")

    net = parser.add_argument_group("transport")
    net.add_argument("--transport", choices=("udp", "frame", "shm"), default="udp",
                     help="udp: kernel UDP socket (Mininet hosts); frame: Ethernet frames in UDP datagrams to a "
                          "softswitch port; shm: the same frames through a softswitch shared-memory port (default "
                          "udp)")
    net.add_argument("--bind", type=_endpoint, metavar="IP[:PORT]",
                     help=f"local socket (udp default 0.0.0.0:{C.OMNI_UDP_PORT}; frame: required, e.g. 127.0.0.1:9101)")
    net.add_argument("--frame-peer", type=argtypes.host_port(ipv4=True), metavar="IP:PORT",
                     help="frame: the softswitch port's socket")
    net.add_argument("--ring", type=Path, metavar="PATH",
                     help="shm: the softswitch port's ring file (the switch's -i N@shm:PATH)")
    net.add_argument("--worker-addr", type=_endpoint, metavar="IP[:PORT]",
                     help="frame, shm: this worker's IPv4 address and UDP port inside the frames (as registered)")
    net.add_argument("--mac", type=_mac, help="frame, shm: this worker's MAC address")
    net.add_argument("--switch-mac", type=_mac, help="frame, shm: the switch's MAC address")

    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="print one JSON object on stdout: stats (summed over the calls), calls (each call's "
                          "elapsed_s, joined_s, exchange_s, cpu_s, retransmissions, rendezvous_resends), verification")
    out.add_argument("--progress-file", type=Path, metavar="FILE",
                     help="append JSON progress lines to FILE while running (format: host/README.md)")
    out.add_argument("--progress-interval", type=argtypes.seconds, default=0.5, metavar="S",
                     help="seconds between progress updates (default 0.5)")
    out.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    return parser


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AgentConfig:
    frame_link = None
    transport = TransportKind(args.transport)
    if transport in (TransportKind.FRAME, TransportKind.SHM):
        where = ((("--bind", args.bind), ("--frame-peer", args.frame_peer)) if transport is TransportKind.FRAME
                 else (("--ring", args.ring),))
        missing = [flag for flag, value in (*where, ("--worker-addr", args.worker_addr), ("--mac", args.mac),
                                            ("--switch-mac", args.switch_mac)) if value is None]
        if missing:
            parser.error(f"--transport {transport.value} needs {', '.join(missing)}")
        ip, port = args.worker_addr
        bind = args.bind if transport is TransportKind.FRAME else None
        frame_link = FrameLink(bind=bind, peer=args.frame_peer, worker=Endpoint(args.mac, IPv4Address(ip), port),
                               switch_mac=args.switch_mac, ring=args.ring)
    try:
        return AgentConfig(
            switch_ip=IPv4Address(args.switch[0]), switch_port=args.switch[1], job_id=args.job,
            worker_id=args.worker_id, workers=args.workers, slots=args.slots,
            bind=args.bind or ("0.0.0.0", C.OMNI_UDP_PORT), transport=transport, frame_link=frame_link,
            timeouts=Timeouts(retransmit_initial=args.rto, retransmit_first=args.rto_first,
                              request_fallback=args.request_fallback, backoff=args.backoff, retransmit_max=args.rto_max,
                              join=args.join_timeout, stall=args.stall_timeout, deadline=args.deadline),
            pacing=Pacing(max_burst=args.max_burst, pps=args.pps), zero_threshold=args.threshold, dense=args.dense,
            lookahead=args.lookahead, first_tensor_id=args.first_tensor_id,
        )
    except ValueError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


#: The first bytes of every .npy file (numpy.lib.format).
NPY_MAGIC = b"\x93NUMPY"


def load_input(path: Path) -> np.ndarray:
    """The array saved in `path` with numpy.save; InputError saying what is wrong and what to do otherwise."""
    try:
        with path.open("rb") as stream:
            magic = stream.read(len(NPY_MAGIC))
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}; check the --input path") from None
    if magic != NPY_MAGIC:
        what = "a .npz archive" if magic.startswith(b"PK") else "not a .npy file (no NumPy header)"
        raise InputError(f"{path} is {what}: save one array with numpy.save(path, array)")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):
            raise InputError(f"{path} holds Python objects, not numbers: save a float32 or int32 array") from None
        raise InputError(f"{path} is a damaged .npy file: {error}") from None
    if array.dtype not in (np.float32, np.int32):
        hint = "float32" if array.dtype.kind in "fc" else "int32"
        raise InputError(f"{path} holds {array.dtype} values: the switch adds float32 or int32; convert it first, "
                         f"e.g. numpy.save(path, numpy.load(path).astype(numpy.{hint}))")
    return array


def _load_tensor(args: argparse.Namespace) -> np.ndarray:
    if args.input is not None:
        return load_input(args.input)
    return synthetic_tensor(args.synthetic, args.density, args.seed, args.worker_id, args.dtype)


def _verify(args: argparse.Namespace, result: np.ndarray, agent: AllReduce) -> dict[str, object]:
    exact = synthetic_sum(args.synthetic, args.density, args.seed, args.workers, args.dtype)
    if args.dtype == "int32":
        wrong = int(np.count_nonzero(result.astype(np.int64) != exact))
        return {"ok": wrong == 0, "wrong_values": wrong}
    assert agent.last_exponent is not None
    # Section 5's bound, plus the final rounding of the sum to float32 (half an ulp, at most 2^-24 relative).
    allowed = error_bound(agent.last_exponent, args.workers) + np.abs(exact) * 2.0**-24
    error = np.abs(result.astype(np.float64) - exact)
    if args.threshold is not None:
        return {"ok": True, "max_error": float(f"{error.max(initial=0.0):.3g}"),
                "note": "threshold drops values: unchecked"}
    wrong = int(np.count_nonzero(error > allowed))
    # Three significant digits, as the testbed report prints them: more would be noise of the float32 rounding.
    return {"ok": wrong == 0, "wrong_values": wrong, "max_error": float(f"{error.max(initial=0.0):.3g}"),
            "bound": float(f"{allowed.max(initial=0.0):.3g}")}


def _verify_text(verification: dict[str, object]) -> str:
    if "bound" in verification:
        detail = f"max error {verification['max_error']:.3g} (bound {verification['bound']:.3g})"
    elif "max_error" in verification:
        detail = f"max error {verification['max_error']:.3g}, {verification.get('note', '')}"
    else:
        detail = "exact"
    wrong = int(verification.get("wrong_values", 0))
    verdict = "ok" if verification["ok"] else f"WRONG: {wrong} {plural(wrong, 'value')} out of bounds"
    return f"{verdict}, {detail}"


def _report(stats: Stats, calls: list[dict], stream: TextIO) -> None:
    repeat = len(calls)
    sent_share = stats.blocks_sent / stats.blocks_total if stats.blocks_total else 0.0
    rate = stats.bytes_sent / stats.elapsed_s / 2**20 if stats.elapsed_s else 0.0
    stream.write(
        f"all-reduces        {repeat}\n"
        f"blocks sent        {stats.blocks_sent} of {stats.blocks_total} ({sent_share:.1%})\n"
        f"packets sent/recv  {stats.packets_sent} / {stats.packets_received}\n"
        f"bytes sent/recv    {stats.bytes_sent} / {stats.bytes_received} ({rate:.2f} MiB/s sent)\n"
        f"retransmissions    {stats.retransmissions} (rendezvous resends {stats.rendezvous_resends})\n"
        f"requests / repairs {stats.requests_sent} / {stats.repairs_sent} sent, {stats.repairs_received} received\n"
        f"duplicates ignored {stats.duplicates} (early results {stats.early}, ignored {stats.ignored})\n"
        f"time               {stats.elapsed_s:.3f} s\n"
    )
    if repeat > 1:  # the first call also waits for the other workers to start; the later ones are in step
        times = " ".join(f"{call['elapsed_s']:.3f}" for call in calls)
        stream.write(f"time per call      {times} s\n")


def _counts(agent: AllReduce) -> Counts:
    """Packet counts of every finished all-reduce plus the one under way."""
    total = agent.total_stats
    sent, received, retransmitted = total.packets_sent, total.packets_received, total.retransmissions
    current = agent.current_stats
    if current is not None and current is not agent.last_stats:  # under way: not in total_stats yet
        sent, received, retransmitted = (sent + current.packets_sent, received + current.packets_received,
                                         retransmitted + current.retransmissions)
    return Counts(sent, received, retransmitted)


def _sinks(args: argparse.Namespace) -> list[ProgressSink]:
    sinks: list[ProgressSink] = []
    if args.progress_file is not None:
        try:
            sinks.append(ProgressFile(args.progress_file))
        except OSError as error:
            raise InputError(f"cannot write the progress file {args.progress_file}: {error.strerror or error}, "
                             f"give a writable --progress-file") from None
    if sys.stderr.isatty():
        sinks.append(ProgressBar(sys.stderr, f"job {args.job} worker {args.worker_id}"))
    return sinks


def _no_huge_pages() -> None:
    """Ask numpy not to madvise its large arrays into transparent huge pages, in this process.

    The agent process touches each of its large arrays (input, lanes, sums, output) for the first time once, and
    with the kernel's THP defrag set to "madvise" (Debian's default) every first touch of a huge page may compact
    memory synchronously: on the shared development machine, first-touching 300 MB cost 0.6-0.8 s of CPU with
    huge pages and 0.2 s without. A library caller (AllReduce in a training process) keeps numpy's setting.
    """
    core = getattr(np, "_core", None) or np.core
    setter = getattr(core.multiarray, "_set_madvise_hugepage", None)
    if setter is not None:
        setter(False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    json_usage_errors(parser, wants_json(argv))
    args = parser.parse_args(argv)
    _no_huge_pages()
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.verify and args.synthetic is None:
        parser.error("--verify needs --synthetic (only then can a worker rebuild the others' tensors)")
    config = config_from_args(args, parser)
    outcome: dict[str, object] = {"job": config.job_id, "worker_id": config.worker_id}
    status = EXIT_OK
    tracker: ProgressTracker | None = None
    try:
        # Early checks, before any packet: the input file, its dtype, the output's folder, the progress file.
        tensor = _load_tensor(args)
        if args.output is not None and not args.output.resolve().parent.is_dir():
            raise InputError(f"cannot write {args.output}, its folder does not exist; create it or fix --output")
        tracker = ProgressTracker(job=config.job_id, worker_id=config.worker_id, blocks=block_count(tensor.size),
                                  runs=args.repeat, sinks=_sinks(args))
        tracker.start()
        interval = args.progress_interval
        with AllReduce(config, progress=tracker, progress_interval=interval) as agent:
            tracker.counts = lambda: _counts(agent)
            # The result buffer exists, written once, before the first call, as a training job's gradient buffers
            # do and as torch.distributed.all_reduce's in-place tensor does: the calls time the all-reduce, not the
            # kernel faulting in a fresh buffer's pages (tens of milliseconds per 100 MB).
            result = np.empty_like(tensor)
            result.fill(0)
            if args.start_barrier is not None:
                wait_at_barrier(args.start_barrier, config.name, config.timeouts.join)
            calls = []
            for _ in range(args.repeat):
                tracker.next_run()
                agent.allreduce(tensor, out=result)
                calls.append({key: agent.last_stats.as_dict()[key] for key in CALL_FIELDS})
            stats = agent.total_stats
        tracker.finish()
        if args.output is not None:
            np.save(args.output, result)
        outcome["stats"] = stats.as_dict()
        outcome["calls"] = calls
        if args.verify:
            verification = _verify(args, result, agent)
            outcome["verify"] = verification
            if not verification["ok"]:
                status = EXIT_WRONG_RESULT
    except (InputError, JobMismatch, OverflowRisk, PeerRefused) as error:
        status, outcome["error"] = EXIT_REFUSED, _error_text(error)
    except (SwitchUnreachable, AgentTimeout) as error:
        status, outcome["error"] = EXIT_NETWORK, _error_text(error)
    except ProtocolError as error:
        status, outcome["error"] = EXIT_PROTOCOL, _error_text(error)
    except OSError as error:  # e.g. the bind address is in use or not local
        status, outcome["error"] = EXIT_NETWORK, (f"{type(error).__name__}: {error.strerror or error}, check --bind "
                                                  f"(a local address, a free port)")
    finally:
        if tracker is not None:
            tracker.close()
    outcome["status"] = status
    outcome["ok"] = status == EXIT_OK  # as every omnireduce CLI's JSON says it
    if args.json:
        json.dump(outcome, sys.stdout)
        sys.stdout.write("\n")
    else:
        if "stats" in outcome:
            _report(stats, outcome["calls"], sys.stdout)
        if "verify" in outcome:
            sys.stdout.write(f"verify             {_verify_text(outcome['verify'])}\n")
    if "error" in outcome:
        sys.stderr.write(f"omnireduce-agent: error: {outcome['error']}\n")
    return status


def _error_text(error: Exception) -> str:
    """'WorkerMissing: <message>': the kind of failure (host/errors.py) and the agent's own words."""
    return f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    sys.exit(main())
