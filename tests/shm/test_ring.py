# Run: .venv/bin/pytest tests/shm/test_ring.py -q
"""The shared-memory frame rings (omnireduce/shm): records that wrap around the end of a ring, a full ring, frames
of every length up to the largest, a frame too long, the doorbell handshake between two processes, and damaged
files and rings (refused with a message, or counted and resynchronised; never a crash or a hang)."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from omnireduce.shm import (
    FROM_SWITCH,
    TO_SWITCH,
    RingFile,
    RingFileError,
    RingGroup,
    RingScatter,
    layout,
    record_bytes,
    unavailable_reason,
)
from tests.polling import stop_process, wait_until

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"no ring module: {unavailable_reason()}")

TIMEOUT = 10.0


def frame(length: int, seed: int) -> bytes:
    """A frame whose every byte depends on its length and seed, so a misplaced byte shows."""
    return bytes((seed * 31 + i * 7 + length) & 0xFF for i in range(length))


@pytest.fixture
def pair(tmp_path):
    """A small ring file as a switch makes it, and the same file as an agent opens it."""
    owner = RingFile.create(tmp_path / "port1", ring_bytes=256, max_frame=100)
    peer = RingFile.open(tmp_path / "port1")
    yield owner, peer
    peer.close()
    owner.close()


def test_the_file_holds_two_rings_and_a_bell_each_and_the_owner_removes_them(tmp_path):
    path = tmp_path / "port7"
    owner = RingFile.create(path)
    assert path.is_file() and (tmp_path / "port7.bell0").exists() and (tmp_path / "port7.bell1").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["port7", "port7.bell0", "port7.bell1"]  # nothing staged
    peer = RingFile.open(path)
    peer.close()
    assert path.is_file()  # the agent's side does not remove anything
    owner.close()
    assert list(tmp_path.iterdir()) == []


def test_records_wrap_around_the_end_of_the_ring(pair):
    owner, peer = pair
    writer, reader = peer.writer(TO_SWITCH), owner.reader(TO_SWITCH)
    sent, received = [], []
    # 256-byte ring: lengths that are not multiples of 8 put record ends everywhere, and each lap wraps.
    for step in range(200):
        batch = [frame(length, step) for length in ((step * 13) % 60, (step * 29) % 97, 1 + step % 5)]
        assert writer.push(batch) == len(batch)
        sent += batch
        received += reader.pop_frames(10)
    assert received == sent
    counters = reader.counters()
    assert counters["head"] > 20 * 256  # many laps
    assert counters["pushed"] == counters["popped"] == len(sent)
    assert counters["dropped_full"] == counters["dropped_long"] == counters["corrupt"] == 0


def test_rows_in_and_out_wrap_too(pair):
    owner, peer = pair
    writer, reader = peer.writer(TO_SWITCH), owner.reader(TO_SWITCH)
    rows = np.zeros((3, 64), dtype=np.uint8)
    out = np.zeros((8, 64), dtype=np.uint8)
    lens = np.zeros(8, dtype=np.uint32)
    for step in range(100):
        rows[:] = np.frombuffer(frame(3 * 64, step), dtype=np.uint8).reshape(3, 64)
        widths = np.array([step % 64, 63, 1], dtype=np.uint32)
        assert writer.push_rows(rows, widths) == 3
        assert reader.pop_rows(out, lens) == 3
        assert lens[:3].tolist() == widths.tolist()
        for row in range(3):
            assert out[row, :widths[row]].tobytes() == rows[row, :widths[row]].tobytes()


def test_a_full_ring_drops_and_counts_the_rest_of_the_batch_in_order(pair):
    owner, peer = pair
    writer, reader = peer.writer(TO_SWITCH), owner.reader(TO_SWITCH)
    frames = [frame(50, i) for i in range(10)]  # 56-byte records: four fit in 256 bytes, 32 bytes stay free
    assert writer.push(frames) == 4
    assert writer.counters()["dropped_full"] == 6
    assert writer.push([frame(20, 99)]) == 1  # a 24-byte record still fits
    assert writer.push([frame(2, 98)]) == 1  # and an 8-byte one: the ring is exactly full
    assert writer.push([b""]) == 0
    assert reader.pop_frames(10) == frames[:4] + [frame(20, 99), frame(2, 98)]
    assert writer.push(frames[4:8]) == 4  # room again
    assert reader.pop_frames(10) == frames[4:8]
    assert writer.counters()["dropped_full"] == 7


def test_frames_of_every_length_up_to_the_largest_and_not_one_byte_more(tmp_path):
    with RingFile.create(tmp_path / "p", ring_bytes=4096, max_frame=1500) as owner, \
            RingFile.open(tmp_path / "p") as peer:
        writer, reader = peer.writer(TO_SWITCH), owner.reader(TO_SWITCH)
        for length in range(0, 1501):
            data = frame(length, length)
            assert writer.push([data]) == 1, length
            assert reader.pop_frames(2) == [data], length
        too_long = frame(1501, 0)
        assert writer.push([frame(3, 1), too_long, frame(4, 2)]) == 2  # refused, and the others go through
        assert reader.pop_frames(5) == [frame(3, 1), frame(4, 2)]
        assert writer.counters()["dropped_long"] == 1
        rows = np.zeros((2, 1502), dtype=np.uint8)
        assert writer.push_rows(rows, np.array([1501, 7], dtype=np.uint32)) == 1
        assert writer.counters()["dropped_long"] == 2
        assert reader.pop_frames(5) == [bytes(7)]


def test_a_frame_longer_than_a_row_is_cut_to_the_row_with_its_whole_length(pair):
    owner, peer = pair
    writer, reader = peer.writer(FROM_SWITCH), owner.reader(FROM_SWITCH)
    long = frame(90, 3)
    writer.push([long])
    rows = np.zeros((4, 32), dtype=np.uint8)
    lens = np.zeros(4, dtype=np.uint32)
    assert reader.pop_rows(rows, lens) == 1
    assert lens[0] == 90 and rows[0].tobytes() == long[:32]


def test_record_sizes():
    assert [record_bytes(n) for n in (0, 4, 5, 12, 13, 186)] == [8, 8, 16, 16, 24, 192]


def test_a_switch_gathers_from_several_rings_and_scatters_to_them(tmp_path):
    owners = [RingFile.create(tmp_path / f"port{n}", ring_bytes=4096, max_frame=1500) for n in (1, 2, 5)]
    peers = [RingFile.open(tmp_path / f"port{n}") for n in (1, 2, 5)]
    try:
        for number, peer in zip((1, 2, 5), peers):
            peer.writer(TO_SWITCH).push([frame(20 + number, k) for k in range(number)])
        group = RingGroup([owner.reader(TO_SWITCH) for owner in owners], [1, 2, 5], per_ring=2, max_frames=16)
        got = group.gather()
        # Two at most from each ring in turn, starting with the first.
        assert got.ports.tolist() == [1, 2, 2, 5, 5]
        assert got.lens.tolist() == [21, 22, 22, 25, 25]
        got = group.gather()  # the next call starts with the next ring; only port 5 has frames left
        assert got.ports.tolist() == [5, 5]
        assert group.gather().ports.tolist() == [5]
        assert group.gather().count == 0
        # Out: frames to ports 2, 9 (no ring: handed back) and 1, in one call.
        scatter = RingScatter({number: owner.writer(FROM_SWITCH) for number, owner in zip((1, 2, 5), owners)})
        outs = [frame(30, 0), frame(31, 1), frame(32, 2), frame(33, 3)]
        data = np.frombuffer(b"".join(outs), dtype=np.uint8)
        lens = np.array([len(out) for out in outs], dtype=np.uint32)
        ports = np.array([2, 9, 1, 2], dtype=np.uint16)
        others = scatter.scatter_addresses(4, data.ctypes.data, lens.ctypes.data, ports.ctypes.data)
        assert others.tolist() == [1]
        assert scatter.published == 3 and scatter.dropped == 0
        assert peers[1].reader(FROM_SWITCH).pop_frames(5) == [outs[0], outs[3]]
        assert peers[0].reader(FROM_SWITCH).pop_frames(5) == [outs[2]]
    finally:
        for ring in peers + owners:
            ring.close()


# --- the doorbell, across two processes --------------------------------------------------------------------------

ECHO = r"""
import sys
from omnireduce.shm import FROM_SWITCH, TO_SWITCH, RingFile
ring = RingFile.open(sys.argv[1])
reader, writer = ring.reader(TO_SWITCH), ring.writer(FROM_SWITCH)
print("ready", flush=True)
echoed = 0
while echoed < int(sys.argv[2]):
    frames = reader.pop_frames(64)
    if not frames:
        if not reader.wait(30.0):
            print(f"lost wake-up after {echoed} frames", flush=True)
            sys.exit(3)
        continue
    writer.push(frames)
    echoed += len(frames)
print("done", flush=True)
"""


def test_the_doorbell_loses_no_wake_up_between_two_processes(tmp_path):
    """Ping-pong through both rings: each side sleeps on its bell between frames, so every frame is a chance to
    lose a wake-up (the producer publishing while the consumer decides to sleep). A lost one would leave both
    sides asleep: the echo process reports it and exits, the test's waits fail."""
    rounds = 3000
    with RingFile.create(tmp_path / "port1") as owner:
        echo = subprocess.Popen([sys.executable, "-c", ECHO, str(tmp_path / "port1"), str(rounds)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert echo.stdout.readline().strip() == "ready"
            writer, reader = owner.writer(TO_SWITCH), owner.reader(FROM_SWITCH)
            for k in range(rounds):
                data = frame(60 + k % 100, k)
                assert writer.push([data]) == 1
                got: list[bytes] = []
                while not got:
                    if not reader.wait(30.0):
                        raise AssertionError(f"no echo of frame {k}: a wake-up was lost ({echo.poll()=})")
                    got = reader.pop_frames(4)
                assert got == [data]
            assert echo.stdout.readline().strip() == "done"
            wait_until(lambda: echo.poll() is not None, TIMEOUT, "the echo process to exit")
            assert echo.returncode == 0
            # The handshake was exercised: both sides slept and were rung awake.
            assert writer.counters()["bells"] > 0 and reader.counters()["bells"] > 0
        finally:
            stop_process(echo)
            echo.stdout.close()


def test_a_wait_returns_at_once_when_frames_are_waiting_and_after_the_timeout_when_not(pair):
    owner, peer = pair
    reader = owner.reader(TO_SWITCH)
    assert reader.wait(0.0) is False
    peer.writer(TO_SWITCH).push([b"x"])
    assert reader.wait(30.0) is True
    assert reader.counters()["sleeping"] == 0


# --- damaged files and rings ---------------------------------------------------------------------------------------

def poke(path: Path, offset: int, value: int, size: int = 8) -> None:
    with open(path, "r+b") as stream, mmap.mmap(stream.fileno(), 0) as mapped:
        mapped[offset:offset + size] = value.to_bytes(size, sys.byteorder)


def test_a_file_that_is_not_a_ring_file_is_refused_with_a_message(tmp_path):
    with pytest.raises(RingFileError, match="does not exist.*-i N@shm"):
        RingFile.open(tmp_path / "missing")
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x01" * 8192)
    with pytest.raises(RingFileError, match="not an initialised frame-ring file"):
        RingFile.open(junk)
    short = tmp_path / "short"
    short.write_bytes(b"\x00" * 100)
    with pytest.raises(RingFileError, match="shorter than its header"):
        RingFile.open(short)
    with pytest.raises(RingFileError, match="cannot open ring file.*directory"):
        RingFile.open(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(RingFileError, match="not a regular file"):
        RingFile.open(tmp_path / "fifo")


@pytest.mark.parametrize("field,value,message", [
    (16, 1000, "impossible geometry"),             # ring_bytes not a power of two
    (16, 1 << 20, "shorter than its header says"),  # geometry larger than the file
    (8, 7, "another ring layout version"),         # version
])
def test_a_damaged_header_is_refused(tmp_path, field, value, message):
    path = tmp_path / "port1"
    with RingFile.create(path, ring_bytes=256, max_frame=100):
        poke(path, field, value, 4 if field == 8 else 8)
        with pytest.raises(RingFileError, match=message):
            RingFile.open(path)


def test_a_record_length_beyond_the_ring_is_counted_and_the_ring_resynchronises(pair):
    owner, peer = pair
    writer, reader = peer.writer(TO_SWITCH), owner.reader(TO_SWITCH)
    places = layout()
    assert writer.push([frame(10, 1), frame(10, 2)]) == 2
    # The first record's length word says 5000 bytes: more than max_frame and than what head announces.
    poke(owner.path, places.data(TO_SWITCH, 256), 5000, 4)
    assert reader.pop_frames(10) == []
    counters = reader.counters()
    assert counters["corrupt"] == 1 and counters["head"] == counters["tail"]
    assert writer.push([frame(12, 3)]) == 1  # the ring works again
    assert reader.pop_frames(10) == [frame(12, 3)]


def test_a_length_within_max_frame_but_beyond_head_is_corrupt_too(pair):
    owner, peer = pair
    writer, reader = peer.writer(TO_SWITCH), owner.reader(TO_SWITCH)
    assert writer.push([frame(10, 1)]) == 1
    poke(owner.path, layout().data(TO_SWITCH, 256), 90, 4)  # 90 <= max_frame, but only 16 bytes were written
    assert reader.pop_frames(10) == []
    assert reader.counters()["corrupt"] == 1


@pytest.mark.parametrize("which", ["head", "tail"])
def test_positions_more_than_a_ring_apart_are_dropped_and_counted_never_followed(pair, which):
    owner, peer = pair
    writer, reader = peer.writer(TO_SWITCH), owner.reader(TO_SWITCH)
    places = layout()
    writer.push([frame(10, 1)])
    offset = places.control(TO_SWITCH) + getattr(places, which)
    poke(owner.path, offset, (1 << 63) + 12345)  # far away, and not even aligned
    # The producer sees no room (counted), the consumer drops what is pending (counted) and both carry on.
    if which == "tail":
        assert writer.push([frame(10, 2)]) == 0
        assert writer.counters()["dropped_full"] == 1
    assert reader.pop_frames(10) == []
    assert reader.counters()["corrupt"] == 1
    assert writer.push([frame(11, 3)]) == 1
    assert reader.pop_frames(10) == [frame(11, 3)]


def test_garbage_everywhere_in_a_ring_never_crashes_or_hangs(tmp_path):
    """Random positions and random data: every pop returns (frames or none), every push returns."""
    rng = np.random.default_rng(7)
    path = tmp_path / "port1"
    places = layout()
    with RingFile.create(path, ring_bytes=256, max_frame=100) as owner, RingFile.open(path) as peer:
        writer, reader = peer.writer(TO_SWITCH), owner.reader(TO_SWITCH)
        control = places.control(TO_SWITCH)
        data = places.data(TO_SWITCH, 256)
        with open(path, "r+b") as stream, mmap.mmap(stream.fileno(), 0) as mapped:
            for _ in range(2000):
                mapped[data:data + 256] = rng.integers(0, 256, 256, dtype=np.uint8).tobytes()
                for field in (places.head, places.tail):
                    if rng.random() < 0.5:
                        mapped[control + field:control + field + 8] = rng.integers(0, 1 << 62).item().to_bytes(
                            8, sys.byteorder)
                for got in reader.pop_frames(8):
                    assert len(got) <= 100
                writer.push([frame(int(rng.integers(0, 120)), 0)])
        assert reader.counters()["corrupt"] > 0


def test_a_closed_file_refuses_further_use(pair):
    owner, peer = pair
    writer = peer.writer(TO_SWITCH)
    peer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.push([b"x"])


def test_geometry_is_checked_before_anything_is_made(tmp_path):
    with pytest.raises(ValueError, match="power of two"):
        RingFile.create(tmp_path / "p", ring_bytes=1000)
    with pytest.raises(ValueError, match="does not fit"):
        RingFile.create(tmp_path / "p", ring_bytes=256, max_frame=300)
    assert list(tmp_path.iterdir()) == []


def test_the_module_is_built_once_and_cached(tmp_path, monkeypatch):
    """A fresh cache builds the module (once); a second process imports it from the cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    script = "from omnireduce.shm.native import load; load()"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], check=True, env=os.environ.copy())
    cached = list((tmp_path / "omnireduce" / "shm").glob("_omnireduce_shm_*"))
    assert len(cached) == 1
