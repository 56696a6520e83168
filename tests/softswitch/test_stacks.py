# Run: .venv/bin/pytest tests/softswitch/test_stacks.py -q
"""Header stacks with tests/softswitch/p4/stack_test.p4: extraction into `next` in a loop through a subparser,
`last` in a select, `lastIndex`, StackOutOfBounds, push_front/pop_front, run-time indexes (read, write,
setValid, setInvalid), a stack copy and a ?: between stack elements.

A frame is ethernet (0x88B9), command (op, index, value), labels (16-bit label, 7-bit ttl, bottom-of-stack
bit, 8-bit tag). The output is report (error code, parser lastIndex, valid bits of labels[0..2], a value read,
valid bits of saved[0..2]), then ethernet, command, the valid labels in order, the valid saved copies, spare.
"""

from __future__ import annotations

import struct

import pytest
from switch_helpers import device_for, ethernet, only_output

# Every test runs on the native and on the Python packet pipeline (conftest.py).
pytestmark = pytest.mark.usefixtures("backend")

ETHERTYPE = 0x88B9
NO_ERROR, TOO_SHORT, STACK_OUT_OF_BOUNDS = 0, 1, 2
(PUSH1, POP1, PUSH2, POP2, PUSH4, POP4, READ, WRITE, VALIDATE, COPY, MUX, INVALIDATE) = range(1, 13)


@pytest.fixture(scope="module")
def device():
    return device_for("stack_test")


def command(op: int = 0, index: int = 0, value: int = 0) -> bytes:
    return struct.pack(">BBH", op, index, value)


def label(value: int, ttl: int = 5, bos: int = 0, tag: int = 0x11) -> bytes:
    return struct.pack(">HBB", value, (ttl << 1) | bos, tag)


def labels(*values: int) -> list[bytes]:
    """Labels 0x0001.. with the bottom-of-stack bit on the last."""
    return [label(v, bos=int(i == len(values) - 1)) for i, v in enumerate(values)]


def report(error: int = NO_ERROR, last_index: int = 0, valid: int = 0, read: int = 0, saved: int = 0) -> bytes:
    return struct.pack(">BBBHB", error, last_index, valid, read, saved)


def frame(cmd: bytes, stack: list[bytes], payload: bytes = b"PAYLOAD") -> bytes:
    return ethernet(ETHERTYPE) + cmd + b"".join(stack) + payload


def send(device, data: bytes) -> bytes:
    port, out = only_output(device.process_packet(2, data))
    assert port == 2
    return out


def expected(rep: bytes, cmd: bytes, stack: list[bytes], payload: bytes = b"PAYLOAD", saved: list[bytes] = (),
             spare: bytes = b"") -> bytes:
    return rep + ethernet(ETHERTYPE) + cmd + b"".join(stack) + b"".join(saved) + spare + payload


@pytest.mark.parametrize("count", [1, 2, 3])
def test_labels_are_extracted_into_next_until_bottom_of_stack(device, count):
    stack = labels(*range(1, count + 1))
    valid = (1 << count) - 1
    assert send(device, frame(command(), stack)) == expected(report(last_index=count - 1, valid=valid),
                                                              command(), stack)


def test_a_fourth_label_is_stack_out_of_bounds_and_stays_in_the_payload(device):
    stack = [label(1), label(2), label(3), label(4, bos=1)]
    out = send(device, frame(command(), stack))
    # The error stops parsing after three labels: the fourth is payload, the packet still goes through ingress.
    assert out == expected(report(STACK_OUT_OF_BOUNDS, last_index=2, valid=0b111), command(), stack[:3],
                           payload=stack[3] + b"PAYLOAD")


def test_a_truncated_label_is_packet_too_short(device):
    stack = labels(1, 2)
    out = send(device, frame(command(), stack, payload=b"")[:-2])
    assert out == expected(report(TOO_SHORT, last_index=0, valid=0b001), command(), stack[:1],
                           payload=stack[1][:2])


def test_push_front_one_shifts_down_and_the_new_first_label_is_written(device):
    stack = labels(1, 2)
    cmd = command(PUSH1, value=0x99)
    fresh = struct.pack(">HBB", 0x99, 64 << 1, 0xEE)
    assert send(device, frame(cmd, stack)) == expected(report(last_index=1, valid=0b111), cmd, [fresh] + stack)


def test_push_front_drops_what_falls_off_the_end(device):
    stack = labels(1, 2, 3)
    cmd = command(PUSH2)
    # The first two elements become invalid (P4_16); labels[2] holds the old labels[0].
    assert send(device, frame(cmd, stack)) == expected(report(last_index=2, valid=0b100), cmd, stack[:1])


def test_push_front_by_more_than_the_size_empties_the_stack(device):
    cmd = command(PUSH4)
    assert send(device, frame(cmd, labels(1, 2))) == expected(report(last_index=1), cmd, [])


@pytest.mark.parametrize("op, remaining", [(POP1, [2, 3]), (POP2, [3]), (POP4, [])])
def test_pop_front(device, op, remaining):
    stack = labels(1, 2, 3)
    cmd = command(op)
    valid = (1 << len(remaining)) - 1
    assert send(device, frame(cmd, stack)) == expected(report(last_index=2, valid=valid), cmd, stack[3 - len(remaining):])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_read_at_a_runtime_index(device, index):
    stack = labels(0x101, 0x202, 0x303)
    cmd = command(READ, index=index)
    assert send(device, frame(cmd, stack)) == expected(report(last_index=2, valid=0b111, read=0x101 * (index + 1)),
                                                       cmd, stack)


def test_write_at_a_runtime_index(device):
    stack = labels(1, 2, 3)
    cmd = command(WRITE, index=1, value=0xBEEF)
    written = [stack[0], label(0xBEEF), stack[2]]
    assert send(device, frame(cmd, stack)) == expected(report(last_index=2, valid=0b111), cmd, written)


def test_set_valid_and_writes_at_a_runtime_index(device):
    stack = labels(1)
    cmd = command(VALIDATE, index=2, value=7)
    written = stack + [struct.pack(">HBB", 7, (1 << 1) | 1, 0x55)]
    assert send(device, frame(cmd, stack)) == expected(report(last_index=0, valid=0b101), cmd, written)


def test_set_invalid_at_a_runtime_index(device):
    stack = labels(1, 2, 3)
    cmd = command(INVALIDATE, index=1)
    assert send(device, frame(cmd, stack)) == expected(report(last_index=2, valid=0b101), cmd, [stack[0], stack[2]])


@pytest.mark.parametrize("op", [READ, WRITE, VALIDATE, INVALIDATE])
def test_an_index_out_of_bounds_in_a_control_drops_the_packet(device, op):
    before = device.stats.get("drop:error:StackOutOfBounds", 0)
    assert device.process_packet(2, frame(command(op, index=3), labels(1, 2))) == []
    assert device.stats["drop:error:StackOutOfBounds"] == before + 1


def test_copying_the_stack_copies_every_element(device):
    stack = labels(1, 2)
    cmd = command(COPY)
    out = send(device, frame(cmd, stack))
    # saved = labels, then labels[0] is invalidated; saved[2] stays invalid like labels[2].
    assert out == expected(report(last_index=1, valid=0b010, saved=0b011), cmd, stack[1:], saved=stack)


@pytest.mark.parametrize("index, picked", [(0, 1), (1, 2)])
def test_a_conditional_between_two_elements_copies_the_one_it_picks(device, index, picked):
    stack = labels(1, 2)
    cmd = command(MUX, index=index)
    assert send(device, frame(cmd, stack)) == expected(report(last_index=1, valid=0b011, read=picked), cmd, stack,
                                                       spare=stack[picked - 1])


def test_frames_without_the_command_pass_unchanged(device):
    data = ethernet(0x0800) + b"\x45" + bytes(30)
    assert send(device, data) == report(last_index=0) + data
