# Run: .venv/bin/pytest tests/p4/test_tna_model.py
"""Differential check of the Tofino program's control flow: random packet streams through the v1model program (the
reference, p4src/build/omnireduce.json on the softswitch) and through the Python model of p4src/tna/tna.p4
(tests/p4/tna_model.py) must give the same packets out, packet by packet, and leave the same state.

The streams are random but drawn from small domains (2-3 workers, 1-2 slots, a few blocks, tensors, sets and
peers), so that announcements match, rounds complete, sets are reused, tensors roll over and every drop reason
occurs. Registers are compared in the v1model encoding (the tensor cells differ on Tofino: tna_model.tensor_cell),
counters by packets (byte counts differ: Tofino counts the recirculated packet with its 22-byte omni_bridge_t).

What the model adds over tests/p4/test_packets.py (which runs on it too): corner cases no scenario writes down
(a next_block below its block, requests naming odd peers, out-of-step sets, malformed frames between rounds).
"""

from __future__ import annotations

import random
from collections import Counter as Tally

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether

from omnireduce.p4src import artifacts
from omnireduce.p4src import constants as C
from omnireduce.p4src.scapy_omni import Omni
from omnireduce.softswitch.device import Device

from .omniswitch import TNA, V1MODEL, OmniSwitch, make_workers, omni_frame
from .tna_model import RECIRCULATION_PORTS, TnaModel

END = C.END_OF_TENSOR
JOBS = {1: dict(workers=3, slot_base=0, slot_count=2, mcast_grp=5), 2: dict(workers=2, slot_base=7, slot_count=1,
                                                                            mcast_grp=6)}


def _pair() -> tuple[OmniSwitch, OmniSwitch]:
    reference = Device(backend="native")
    reference.load_pipeline(artifacts.BMV2_JSON.read_bytes())
    model = TnaModel()
    model.value_set_insert(RECIRCULATION_PORTS, TNA.recirculation_port)
    switches = (OmniSwitch(reference, view=V1MODEL), OmniSwitch(model, view=TNA))
    first_port = 1
    for job, spec in JOBS.items():
        workers = make_workers(spec["workers"], first_port=first_port, host_base=first_port)
        first_port += spec["workers"]
        for switch in switches:
            switch.add_job(job, workers, spec["slot_base"], spec["slot_count"], spec["mcast_grp"])
    return switches


def _random_frame(rng: random.Random, switch: OmniSwitch, rounds: Tally) -> tuple[int, bytes]:
    """A random frame; half the time a worker's plausible next move, read off the reference switch's state (its
    announcement, the slot's tensor, the set after the slot's results so far), so that rounds do complete."""
    job = rng.choice(list(JOBS))
    spec = JOBS[job]
    workers = switch.jobs[job]
    worker = rng.choice(workers)
    slots = spec["slot_count"]
    slot = rng.randrange(slots + 1) if rng.random() < 0.05 else rng.randrange(slots)
    global_slot = spec["slot_base"] + slot
    block = slot + slots * rng.choice((0, 0, 0, 1, 1, 2, 3, 4))
    tensor = rng.choice((1, 1, 1, 2, 2, 3, 0x8002))
    shadow_set = rng.randrange(C.SETS)
    if rng.random() < 0.5 and slot < slots:
        held = switch.register("slot_tensor", global_slot)
        announced = switch.worker_next(global_slot, worker.worker_id + 1)[worker.worker_id]
        if held and announced != END:
            tensor, block = held & 0xFFFF, announced
        elif held:
            tensor, block = (held + 1) & 0xFFFF, slot  # the column is closed: start the next tensor
        shadow_set = rounds[(job, slot)] % C.SETS
    next_block = rng.choice((block + slots, block + slots, block + 2 * slots, END, END, block, 0,
                             rng.randrange(8)))
    header_job = job if rng.random() < 0.97 else 3 - job
    kind = rng.random()
    if kind < 0.65:
        values = [rng.randrange(-5, 6) for _ in range(C.LANES)]
        frame = omni_frame(worker, C.MSG_CONTRIB, header_job, tensor, slot, shadow_set, block, next_block, values,
                           exponent=rng.randrange(120, 140))
    elif kind < 0.85:
        frame = omni_frame(worker, C.MSG_REQUEST, header_job, tensor, slot, shadow_set, block,
                           peer=rng.randrange(len(workers) + 1))
    elif kind < 0.95:
        frame = omni_frame(worker, C.MSG_REPAIR, header_job, tensor, slot, shadow_set, block, next_block,
                           [rng.randrange(9) for _ in range(C.LANES)], peer=rng.randrange(len(workers) + 1))
    else:
        frame = omni_frame(worker, C.MSG_CONTRIB, header_job, tensor, slot, shadow_set, block, next_block,
                           [1] * C.LANES)
        data = bytes(frame)
        damage = rng.randrange(3)
        if damage == 0:
            return worker.port, data[:rng.randrange(20, len(data))]
        if damage == 1:
            frame[IP].chksum = 0x1234
            return worker.port, bytes(frame)
        return worker.port + 1, data  # from the wrong port
    return worker.port, bytes(frame)


def _state(switch: OmniSwitch) -> dict:
    """Registers (v1model encoding) and packet counters. NOTE: announcements are compared for the job's workers
    once the slot holds a tensor: before, v1model's lanes hold 0 and Tofino's END_OF_TENSOR (their initial value,
    which a Tofino slot's lanes of absent workers keep; v1model writes END_OF_TENSOR there on every new tensor)."""
    state = {}
    for spec in JOBS.values():
        for slot in range(spec["slot_base"], spec["slot_base"] + spec["slot_count"]):
            state[("slot_tensor", slot)] = switch.register("slot_tensor", slot)
            if state[("slot_tensor", slot)]:
                state[("worker_next", slot)] = switch.worker_next(slot, spec["workers"])
            for shadow_set in range(C.SETS):
                for name in ("round_tensor", "round_block", "round_next", "round_exponent"):
                    state[(name, slot, shadow_set)] = switch.round_register(name, slot, shadow_set)
                state[("lanes", slot, shadow_set)] = [switch.round_register(f"round_value_{k}", slot, shadow_set)
                                                      for k in range(C.LANES)]
    state["drops"] = {C.DROP_REASONS[r]: switch.drops(r) for r in C.DROP_REASONS}
    for name in ("contributions", "results", "replays", "forwards"):
        state[name] = {job: switch.job_counter(name, job) for job in JOBS}
    return state


@pytest.mark.parametrize("seed", range(4))
def test_tna_model_matches_the_v1model_program_on_random_streams(seed):
    reference, model = _pair()
    rng = random.Random(seed)
    outcomes, rounds, sent = Tally(), Tally(), []
    for step in range(1500):
        if sent and rng.random() < 0.1:
            port, frame = rng.choice(sent[-20:])  # a retransmission
        else:
            port, frame = _random_frame(rng, reference, rounds)
            sent.append((port, frame))
        expected = sorted(reference.send(port, frame))
        got = sorted(model.send(port, frame))
        assert got == expected, f"step {step}: {Ether(frame).summary()}"
        outcomes["out" if expected else "none"] += 1
        results = {(Ether(out)[Omni].job_id, Ether(out)[Omni].slot) for _, out in expected
                   if Ether(out)[Omni].msg_type == C.MSG_RESULT and len(expected) > 1}
        for key in results:
            rounds[key] += 1
    assert _state(model) == _state(reference)
    # The stream did exercise the protocol: results went out, and the drop reasons of the round logic occurred.
    drops = _state(reference)["drops"]
    assert outcomes["out"] > 100
    assert sum(_state(reference)["results"].values()) > 20
    for reason in ("DUPLICATE", "STALE", "NOT_ANNOUNCED", "ROUND_NOT_READY", "SET_BUSY", "BAD_PEER"):
        assert drops[reason] > 0, reason


def test_every_aggregation_packet_takes_the_announcement_pass():
    _, model = _pair()
    workers = model.jobs[1]
    frame = omni_frame(workers[0], C.MSG_CONTRIB, 1, 1, 0, 0, 0, END, [1] * C.LANES)
    assert model.send(workers[0].port, bytes(frame)) == []
    assert model.device.passes == ["ingress", "egress (announce)", "ingress (round)"]
    # A REPAIR needs no state: forwarded from the first pass, one copy per worker of the job in egress.
    repair = omni_frame(workers[0], C.MSG_REPAIR, 1, 1, 0, 0, 0, END, [1] * C.LANES, peer=1)
    assert [port for port, _ in model.send(workers[0].port, bytes(repair))] == [workers[1].port]
    assert model.device.passes == ["ingress"] + ["egress"] * len(workers)
