# Run: .venv/bin/pytest tests/bench/test_pcap_and_rates.py -q
"""Pure parts of the BMv2 replay: pcap files written and followed while they grow, the rate, output comparison."""

from __future__ import annotations

import pytest

from omnireduce.bench.bench_softswitch import compare_outputs
from omnireduce.bench.bmv2_replay import rate_between, tools_missing
from omnireduce.bench.pcap_records import GLOBAL_HEADER, PcapTail, read_records, write_pcap


def test_written_trace_reads_back_in_order(tmp_path):
    frames = [bytes([i]) * (60 + i) for i in range(5)]
    write_pcap(tmp_path / "x.pcap", frames)
    records = read_records((tmp_path / "x.pcap").read_bytes())
    assert [r.frame for r in records] == frames
    assert [r.timestamp for r in records] == sorted(r.timestamp for r in records)


def test_torn_last_record_is_left_out(tmp_path):
    write_pcap(tmp_path / "x.pcap", [b"a" * 70, b"b" * 80])
    data = (tmp_path / "x.pcap").read_bytes()
    assert [r.frame for r in read_records(data[:-1])] == [b"a" * 70]
    assert read_records(data[: GLOBAL_HEADER.size - 1]) == []


def test_other_pcap_flavours_are_refused():
    with pytest.raises(ValueError, match="magic 0xa1b23c4d"):
        read_records((0xA1B23C4D).to_bytes(4, "little") + bytes(20))


def test_tail_follows_a_file_written_in_pieces(tmp_path):
    write_pcap(tmp_path / "whole.pcap", [b"x" * 64, b"y" * 100, b"z" * 70])
    data = (tmp_path / "whole.pcap").read_bytes()
    growing = tmp_path / "growing.pcap"
    tail = PcapTail(growing)
    assert tail.poll() == 0  # not created yet
    counts = []
    with growing.open("wb") as out:
        for cut in (10, 30, 24 + 16 + 64, 24 + 16 + 64 + 50, len(data)):
            out.write(data[out.tell() : cut])
            out.flush()
            counts.append(tail.poll())
    tail.close()
    assert counts == [0, 0, 1, 1, 3]
    assert [r.frame for r in tail.records] == [b"x" * 64, b"y" * 100, b"z" * 70]


def test_rate_counts_the_inputs_between_first_and_last_output():
    # Input 3 gave the first output, input 1003 the last, 0.5 s later: inputs 4..1003 were taken in meanwhile.
    assert rate_between(3, 1003, 0.5) == 2000
    with pytest.raises(ValueError):
        rate_between(7, 7, 1.0)
    with pytest.raises(ValueError):
        rate_between(1, 9, 0.0)


def test_output_comparison_tells_order_from_content():
    assert compare_outputs([b"a", b"b"], [b"a", b"b"])["identical_in_order"]
    swapped = compare_outputs([b"a", b"b"], [b"b", b"a"])
    assert not swapped["identical_in_order"] and swapped["same_frames_any_order"]
    assert swapped["first_difference_at"] == 0
    short = compare_outputs([b"a", b"b"], [b"a"])
    assert short["first_difference_at"] == 1 and not short["same_frames_any_order"]


def test_missing_tools_are_named():
    assert tools_missing("/usr/bin/simple_switch", "/usr/bin/simple_switch_CLI") is None
    assert tools_missing(None, "/x") == "simple_switch not on PATH"
    assert tools_missing(None, None) == "simple_switch and simple_switch_CLI not on PATH"
