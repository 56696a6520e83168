# Run: .venv/bin/pytest tests/softswitch/test_digests.py -q
"""Digests with tests/softswitch/p4/digest_test.p4 on both packet pipelines, at the Device: which packets send
which digest with which values (the P4Runtime side, and the side-by-side run with BMv2, are in
test_p4runtime_digests.py)."""

from __future__ import annotations

import json
import struct

import pytest
from switch_helpers import SRC_MAC, device_for, ethernet, only_output, program_json

from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import DigestInfo, DigestSample
from omnireduce.softswitch.errors import InvalidArgument, NotFound

pytestmark = pytest.mark.usefixtures("backend")


def probe(learn: int, nibble: int = 5, tag: int = 7, src: int = SRC_MAC) -> bytes:
    return ethernet(0x88BA, src=src) + struct.pack(">BBH", learn, nibble << 4, tag)


def mac(src: int = SRC_MAC, port: int = 3, nibble: int = 5) -> DigestSample:
    return DigestSample("mac_learn_t", (src, port, nibble))


def tag(value: int = 7) -> DigestSample:
    return DigestSample("tag_t", (value, 0xFD))


@pytest.fixture
def device() -> Device:
    return device_for("digest_test")


def test_the_program_declares_its_digests(device):
    assert device.digest_names() == ["mac_learn_t", "tag_t"]
    assert device.digest_info("mac_learn_t") == DigestInfo("mac_learn_t", (48, 9, 4))
    with pytest.raises(NotFound, match="Did you mean 'tag_t'"):
        device.digest_info("tag")


def test_each_packet_sends_the_digest_it_asks_for(device):
    for learn in (1, 2, 0, 1):
        port, out = only_output(device.process_packet(3, probe(learn)))
        assert port == 3 and out[-2:] == b"\x00\x08"   # the packet goes on, tag + 1
    assert device.take_digests() == [mac(), tag(), mac()]
    assert device.take_digests() == []


def test_only_the_last_digest_a_packet_asks_for_is_sent(device):
    device.process_packet(3, probe(3))     # mac_learn_t, then tag_t: BMv2 keeps one learn id per packet
    assert device.take_digests() == [tag()]


def test_digest_data_is_copied_at_the_call(device):
    device.process_packet(3, probe(5, nibble=2))   # the nibble changes after the call: p4c copied it before
    assert device.take_digests() == [mac(nibble=2)]


def test_a_batch_keeps_the_order_and_a_listener_takes_them(device):
    got = []
    device.set_digest_listener(got.extend)
    device.process_batch([(1, probe(1, src=0xA)), (2, probe(2, tag=9)), (4, probe(1, src=0xB, nibble=1))])
    assert got == [mac(0xA, 1), tag(9), mac(0xB, 4, 1)]
    assert device.take_digests() == []
    device.set_digest_listener(None)
    device.process_packet(3, probe(2))
    assert device.take_digests() == [tag()]


def test_a_failing_listener_does_not_stop_the_packets(device, caplog):
    def broken(samples):
        raise RuntimeError("listener bug")

    device.set_digest_listener(broken)
    assert only_output(device.process_packet(3, probe(1)))
    assert "digest listener failed" in caplog.text


def test_signed_fields_travel_as_twos_complement(backend):
    program = json.loads(program_json("digest_test").read_text())
    scalars = next(t for t in program["header_types"] if t["name"] == "scalars_0")
    for spec in scalars["fields"]:
        if spec[0] == "tmp_3":   # tag_t's second member, the constant 0xFD
            spec[2] = True       # as int<8>: -3
    device = Device()
    device.load_pipeline(program)
    device.process_packet(3, probe(2))
    assert device.take_digests() == [tag()]


def test_a_digest_of_an_unknown_learn_list_is_refused_at_load(backend):
    program = json.loads(program_json("digest_test").read_text())
    for action in program["actions"]:
        for primitive in action["primitives"]:
            if primitive["op"] == "generate_digest":
                primitive["parameters"][1]["value"] = "0x9"
    with pytest.raises(InvalidArgument, match="unknown learn list 9"):
        Device().load_pipeline(program)


def test_frames_given_as_arrays_send_their_digests_too(device):
    # Device.process_arrays (the shared-memory ports' path) delivers digests as process_batch does.
    import numpy as np

    frames = [(1, probe(1, src=0xA)), (2, probe(2, tag=9)), (4, probe(1, src=0xB, nibble=1))]
    data = np.frombuffer(b"".join(frame for _, frame in frames), dtype=np.uint8)
    lens = np.array([len(frame) for _, frame in frames], dtype=np.uint32)
    ports = np.array([port for port, _ in frames], dtype=np.uint16)
    got, emitted = [], []
    device.set_digest_listener(got.extend)
    if not device.process_arrays(data, lens, ports, len(frames), lambda outputs: emitted.append(outputs.count)):
        pytest.skip("the Python pipeline takes no arrays")
    assert emitted == [3]
    assert got == [mac(0xA, 1), tag(9), mac(0xB, 4, 1)]
