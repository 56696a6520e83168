"""The ideal sparse exchange: the least any block-sparse in-network all-reduce can put on the wire.

Each worker sends each of its non-zero blocks once; each block that is non-zero in some worker (the union)
comes back once to every worker; every packet is a data frame of DATA_FRAME_BYTES (190: Ethernet, IPv4, UDP,
the omni header and LANES lanes). No first round, no scale round, no control packets, no loss. For workers
w with n_w non-zero blocks and a union of u blocks:

    to the switch:   sum_w n_w packets           from the switch:   W * u packets       (x 190 bytes each)

The testbed report of newer versions carries the same figure as `job.ideal`; `ideal_of_job` prefers it and
computes it from the inputs otherwise, so the bench reads the same number before and after that change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from omnireduce.host.wire import DATA_FRAME_BYTES
from omnireduce.testbed.inputs import InputSpec, make_inputs, nonzero_block_mask


@dataclass(frozen=True, slots=True)
class IdealExchange:
    """Packets of the ideal exchange of one all-reduce, with the same traffic properties as the testbed's
    Exchange (to/from the switch, packets and bytes)."""

    workers: int
    contributions: int  # sum over workers of their non-zero blocks
    results: int  # blocks non-zero in at least one worker

    @property
    def to_switch_packets(self) -> int:
        return self.contributions

    @property
    def to_switch_bytes(self) -> int:
        return self.contributions * DATA_FRAME_BYTES

    @property
    def from_switch_packets(self) -> int:
        return self.results * self.workers

    @property
    def from_switch_bytes(self) -> int:
        return self.from_switch_packets * DATA_FRAME_BYTES

    @property
    def total_bytes(self) -> int:
        return self.to_switch_bytes + self.from_switch_bytes

    @property
    def received_bytes_per_worker(self) -> int:
        return self.results * DATA_FRAME_BYTES


def ideal_exchange(masks: Sequence[np.ndarray]) -> IdealExchange:
    """The ideal exchange of workers whose non-zero blocks are marked in `masks` (one bool array each)."""
    if not masks:
        raise ValueError("need at least one worker")
    contributions = sum(int(np.count_nonzero(mask)) for mask in masks)
    union = int(np.count_nonzero(np.logical_or.reduce(list(masks))))
    return IdealExchange(len(masks), contributions, union)


def ideal_of_inputs(inputs: Sequence[np.ndarray]) -> IdealExchange:
    return ideal_exchange([nonzero_block_mask(tensor) for tensor in inputs])


def ideal_of_spec(spec: InputSpec) -> IdealExchange:
    """The ideal exchange of the inputs the testbed generates for `spec` (regenerated: it is reproducible)."""
    return ideal_of_inputs(make_inputs(spec))


def expected_ideal(workers: int, blocks: int, density: float) -> IdealExchange:
    """The expected ideal exchange when every block of every worker is non-zero with probability `density`,
    independently (the testbed's inputs): each worker sends d*n blocks, the union holds (1-(1-d)^W)*n."""
    union = 1.0 - (1.0 - density) ** workers
    return IdealExchange(workers, round(workers * density * blocks), round(union * blocks))


def ideal_of_job(job, spec: InputSpec) -> IdealExchange:
    """The report's own ideal exchange (`job.ideal`, where the testbed has it), else computed from the inputs."""
    reported = getattr(job, "ideal", None)
    if reported is not None:
        return IdealExchange(spec.workers, int(reported.to_switch_packets),
                             int(reported.from_switch_packets) // spec.workers)
    return ideal_of_spec(spec)
