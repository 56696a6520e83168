"""The switch's rate inside a real all-reduce, as a fraction of what it does alone.

bench_softswitch times the pipeline on a recorded trace, one core, no sockets. Here a dense all-reduce runs on
the loopback testbed (the softswitch process with UDP ports, one agent process per worker, all on this
machine): frames into the switch per second of all-reduce, against the trace's best native rate.
"""

from __future__ import annotations

from typing import Any

from omnireduce.testbed import TestbedConfig, run_testbed


def end_to_end_rate(workers: int, size: int, switch_result: dict[str, Any]) -> dict[str, Any]:
    report = run_testbed(TestbedConfig(workers=workers, size=size, density=1.0, dense=True))
    if not report.ok:
        return {"ok": False, "failure": report.failure}
    job = report.jobs[0]
    # The last agent to start measures the all-reduce itself (see omnireduce.bench.sweep).
    seconds = min(float(worker.stats.get("elapsed_s", 0.0)) for worker in job.workers)
    frames_in = job.measured.to_switch_packets
    native = [run["pps_wall"] for run in switch_result["softswitch"].values()
              if run.get("backend") == "native" and "pps_wall" in run]
    best = max(native) if native else None
    rate = frames_in / seconds if seconds else 0.0
    return {"ok": True, "workers": workers, "size": size, "seconds": seconds, "frames_in": frames_in,
            "frames_out": job.measured.from_switch_packets, "pps_in": rate,
            "retransmissions": sum(worker.retransmissions for worker in job.workers),
            "best_native_pps_wall": best, "fraction_of_native": rate / best if best else None}


def format_end_to_end(result: dict[str, Any]) -> str:
    if not result.get("ok"):
        return f"end-to-end all-reduce: FAILED: {result.get('failure')}"
    fraction = (f"{100 * result['fraction_of_native']:.1f}% of the native pipeline's {result['best_native_pps_wall']:,} "
                f"packets/s on the trace" if result["fraction_of_native"] else "no native rate to compare with")
    return (f"end-to-end all-reduce (dense, {result['workers']} workers, {result['size']} values, loopback testbed): "
            f"{result['frames_in']:,} frames in over {result['seconds']:.2f} s = {result['pps_in']:,.0f} packets/s into "
            f"the switch, {fraction}; {result['retransmissions']} retransmissions")
