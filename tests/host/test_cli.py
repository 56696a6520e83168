# Run: .venv/bin/pytest tests/host/test_cli.py
"""omnireduce-agent: worker processes against a switch served on loopback by this test process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from omnireduce.host.cli import EXIT_NETWORK, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, build_parser, main
from omnireduce.p4src import constants as C

from .harness import PortServer

AGENT = [sys.executable, "-m", "omnireduce.host.cli"]


@pytest.fixture
def switch(device):
    from tests.p4.omniswitch import OmniSwitch, make_workers

    workers = make_workers(2)
    OmniSwitch(device).add_job(1, workers, slot_base=0, slot_count=8, mcast_grp=1)
    with PortServer(device, [w.port for w in workers]) as server:
        yield server, workers


def agent_args(server, worker, *extra: str) -> list[str]:
    from tests.p4.omniswitch import SWITCH_IP, SWITCH_MAC

    host, port = server.address(worker.port)
    return [
        "--switch", SWITCH_IP, "--job", "1", "--worker-id", str(worker.worker_id), "--workers", "2", "--slots", "8",
        "--transport", "frame", "--bind", "127.0.0.1:0", "--frame-peer", f"{host}:{port}",
        "--worker-addr", f"{worker.ip}:{worker.udp_port}", "--mac", worker.mac, "--switch-mac", SWITCH_MAC,
        "--rto", "0.05", "--join-timeout", "20", *extra,
    ]


def run_agents(server, workers, *extra: str) -> list[subprocess.CompletedProcess]:
    processes = [subprocess.Popen(AGENT + agent_args(server, w, *extra), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for w in workers]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate()) for p in processes]


def test_synthetic_run_verifies_and_reports_json(switch):
    server, workers = switch
    done = run_agents(server, workers, "--synthetic", "5000", "--density", "0.2", "--seed", "3", "--verify",
                      "--json", "--repeat", "2")
    for process in done:
        assert process.returncode == EXIT_OK, process.stderr
        report = json.loads(process.stdout)
        assert report["status"] == EXIT_OK and report["verify"]["ok"] is True
        stats = report["stats"]
        assert stats["blocks_total"] == 2 * 157 and 0 < stats["blocks_sent"] < stats["blocks_total"]
        assert stats["packets_sent"] > 0 and stats["bytes_sent"] >= 190 * stats["contribs_sent"]


def test_input_file_to_output_file_and_human_report(switch, tmp_path):
    server, workers = switch
    for worker in workers:
        np.save(tmp_path / f"x{worker.worker_id}.npy", np.arange(70, dtype=np.int32) * (worker.worker_id + 1))
    processes = [subprocess.Popen(AGENT + agent_args(server, w, "--input", str(tmp_path / f"x{w.worker_id}.npy"),
                                                     "--output", str(tmp_path / f"y{w.worker_id}.npy")),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in workers]
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == EXIT_OK, err
        assert "blocks sent" in out and "retransmissions" in out
    for worker in workers:
        assert np.array_equal(np.load(tmp_path / f"y{worker.worker_id}.npy"), np.arange(70) * 3)


def test_a_bad_input_is_refused_by_every_worker_with_its_exit_status(switch, tmp_path):
    server, workers = switch
    # Worker 0's input holds a NaN: both workers refuse, each saying why, before the join timeout.
    inputs = [tmp_path / "nan.npy", tmp_path / "good.npy"]
    np.save(inputs[0], np.array([1.0, np.nan], np.float32))
    np.save(inputs[1], np.array([1.0, 2.0], np.float32))
    processes = [subprocess.Popen(AGENT + agent_args(server, w, "--input", str(path), "--json"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for w, path in zip(workers, inputs)]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=15)  # well under --join-timeout 20
        assert process.returncode == EXIT_REFUSED, err
        reports.append(json.loads(out))
    assert reports[0]["error"].startswith("InputError: tensor holds 1 NaN/Inf value(s) (1 NaN, 0 Inf)")
    assert reports[1]["error"].startswith("PeerRefused: ") and "(worker 0) refused their input" in reports[1]["error"]


def test_a_missing_worker_has_its_exit_status(switch, capsys):
    server, workers = switch
    # Worker 1 never shows up: worker 0 gives up after --join-timeout.
    status = main(agent_args(server, workers[0], "--synthetic", "64", "--join-timeout", "0.5"))
    assert status == EXIT_NETWORK
    err = capsys.readouterr().err
    assert err.count("WorkerMissing") == 1 and err.count("never showed up") == 1, err  # once, not logged too
    assert err.startswith("omnireduce-agent: error: WorkerMissing: ")


def test_usage_errors_exit_2(capsys):
    base = ["--switch", "10.0.0.254", "--job", "1", "--worker-id", "0", "--workers", "2", "--slots", "8"]
    for argv in (base, base + ["--synthetic", "10", "--transport", "frame"], base + ["--input", "x.npy", "--verify"],
                 base[:1] + ["not-an-ip"] + base[2:] + ["--synthetic", "8"],
                 base + ["--synthetic", "10", "--density", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == EXIT_USAGE
    assert "--transport frame needs --bind, --frame-peer, --worker-addr, --mac, --switch-mac" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--density", "nan"], "argument --density: 'nan' is not a fraction"),
    (["--density", "2"], "argument --density: 2 is not a fraction in [0, 1]"),
    (["--backoff", "nan"], "argument --backoff: 'nan' is not a number"),
    (["--backoff", "0.5"], "argument --backoff: 0.5 is less than 1"),
    (["--threshold", "-1"], "argument --threshold: -1 is negative"),
    (["--stall-timeout", "inf"], "argument --stall-timeout: 'inf' is not a finite number of seconds"),
    (["--rto", "0"], "argument --rto: 0 is not a positive number of seconds"),
    (["--pps", "0"], "argument --pps: 0 is not a positive number"),
    (["--repeat", "x"], "argument --repeat: 'x' is not an integer"),
    (["--frame-peer", "127.0.0.1"], "argument --frame-peer: '127.0.0.1' is not IPv4:PORT: no port"),
    (["--bind", "127.0.0.1:65536"], "argument --bind: '127.0.0.1:65536' is not IPv4[:PORT]: port 65536 is not in"),
    (["--mac", "02:00"], "argument --mac: '02:00' is not a MAC address"),
])
def test_bad_values_are_usage_errors_that_name_the_argument(capsys, extra, message):
    argv = ["--switch", "10.0.0.254", "--job", "1", "--worker-id", "0", "--workers", "2", "--slots", "8",
            "--synthetic", "10", *extra]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_switch_address_defaults_to_the_omni_port():
    args = build_parser().parse_args(["--switch", "10.0.0.254", "--job", "1", "--worker-id", "0", "--workers", "1",
                                      "--slots", "1", "--synthetic", "1"])
    assert args.switch == ("10.0.0.254", C.OMNI_UDP_PORT)


def test_progress_file_lines_and_bar(tmp_path):
    import io

    from omnireduce.host.progress import Counts, ProgressBar, ProgressFile, ProgressTracker

    path = tmp_path / "w0.progress"
    stream = io.StringIO()
    tracker = ProgressTracker(job=1, worker_id=0, blocks=100, runs=2, sinks=[ProgressFile(path), ProgressBar(stream, "w0")],
                              counts=lambda: Counts(packets_sent=7, packets_received=5, retransmissions=1))
    tracker.start()
    tracker.next_run()
    tracker(0.5)
    tracker.next_run()
    tracker(0.25)
    tracker.finish()
    tracker.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["start", "progress", "progress", "done"]
    assert [line["blocks_done"] for line in lines] == [0, 50, 125, 200]
    assert all(line["blocks_total"] == 200 and line["format"] == 1 and line["packets_sent"] == 7 for line in lines)
    assert (lines[2]["run"], lines[2]["runs"], lines[2]["retransmissions"]) == (2, 2, 1)
    drawn = stream.getvalue()
    assert "200/200" in drawn and "1 retransmission" in drawn and "1 retransmissions" not in drawn


def _input_run(tmp_path, capsys, data: bytes | None = None, array=None, json_output=False):
    path = tmp_path / "x.npy"
    if array is not None:
        np.save(path, array)
    else:
        path.write_bytes(data)
    argv = ["--switch", "127.0.0.1", "--job", "1", "--worker-id", "0", "--workers", "2", "--slots", "8",
            "--input", str(path), "--bind", "127.0.0.1:0"] + (["--json"] if json_output else [])
    code = main(argv)
    return code, capsys.readouterr()


def test_input_that_is_not_npy_says_so(tmp_path, capsys):
    code, output = _input_run(tmp_path, capsys, data=b"1,2,3\n")
    assert code == EXIT_REFUSED
    assert output.err.startswith("omnireduce-agent: error: InputError: ")
    assert "is not a .npy file" in output.err and "numpy.save" in output.err and "pickle" not in output.err


def test_float64_input_gets_a_hint_to_convert(tmp_path, capsys):
    code, output = _input_run(tmp_path, capsys, array=np.zeros(64), json_output=True)
    assert code == EXIT_REFUSED
    report = json.loads(output.out)
    assert "float64" in report["error"] and "astype(numpy.float32)" in report["error"]
    assert output.err.count("holds float64") == 1  # said once, not by a log line and the CLI both


def test_help_states_defaults_exit_codes_and_nd_arrays(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("value type (default float32)", "(default udp)", "default: only non-zero blocks",
                   "default: none; the join and stall limits", "default 1)", "any shape (N-D arrays",
                   "exit codes:", "--progress-file"):
        assert phrase in text, phrase


def test_agent_report_uses_mib_and_verify_three_digits(capsys):
    from omnireduce.host.cli import _report, _verify_text
    from omnireduce.host.stats import Stats

    import io
    stream = io.StringIO()
    _report(Stats(bytes_sent=2**20, elapsed_s=1.0), [{"elapsed_s": 1.0}], stream)
    assert "(1.00 MiB/s sent)" in stream.getvalue() and "per call" not in stream.getvalue()
    stream = io.StringIO()
    _report(Stats(bytes_sent=2**20, elapsed_s=1.5), [{"elapsed_s": 1.0}, {"elapsed_s": 0.5}], stream)
    assert "all-reduces        2\n" in stream.getvalue() and "time per call      1.000 0.500 s\n" in stream.getvalue()
    assert _verify_text({"ok": True, "wrong_values": 0, "max_error": 2.384185791015625e-07, "bound": 4.41e-07}) == \
        "ok, max error 2.38e-07 (bound 4.41e-07)"


def test_json_usage_errors_and_a_missing_output_folder(tmp_path, capsys):
    base = ["--switch", "127.0.0.1", "--job", "1", "--worker-id", "0", "--workers", "2", "--slots", "8",
            "--bind", "127.0.0.1:0", "--json"]
    with pytest.raises(SystemExit) as exit_info:
        main(base + ["--synthetic", "10", "--density", "2"])
    assert exit_info.value.code == EXIT_USAGE
    assert json.loads(capsys.readouterr().out)["error"] == "argument --density: 2 is not a fraction in [0, 1]"
    code = main(base + ["--synthetic", "10", "--output", str(tmp_path / "no" / "y.npy")])
    assert code == EXIT_REFUSED
    report = json.loads(capsys.readouterr().out)
    assert "its folder does not exist" in report["error"] and report["ok"] is False and report["status"] == code
