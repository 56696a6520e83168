# Run: .venv/bin/pytest tests/controller/test_status_view.py -q
"""Which workers a column waits for (controller/status.py, `SlotView.waiting_for`), from the slot's registers as
read: the workers whose announced next block is the column's lowest, whether or not others have contributed to
that round yet."""

from __future__ import annotations

from omnireduce.controller.status import RoundView, SlotView
from omnireduce.p4src import constants

END = constants.END_OF_TENSOR


def slot(worker_next: tuple[int, ...], rounds: tuple[RoundView, ...] = ()) -> SlotView:
    idle = tuple(RoundView(index, None, 0, 0, 0) for index in range(len(rounds), constants.SETS))
    return SlotView(slot=0, global_slot=0, tensor=5, rounds=rounds + idle, worker_next=worker_next)


def test_a_round_in_flight_waits_for_the_workers_that_still_announce_its_block():
    aggregating = RoundView(0, 5, 7, 0, 0)
    assert slot((9, 7, END), (aggregating,)).waiting_for() == (1,)


def test_a_column_nobody_else_can_advance_waits_for_the_worker_with_the_lowest_block():
    """Found by the crash test: a worker killed mid-all-reduce holds columns where only it has the next block, and
    no round of those is in flight (nobody else contributes to it); status named nobody there."""
    complete = RoundView(0, 5, 3, 7, 0)
    assert slot((9, 7, END), (complete,)).waiting_for() == (1,)
    assert slot((7, 7, 12)).waiting_for() == (0, 1)


def test_a_finished_column_waits_for_nobody():
    assert slot((END, END, END)).waiting_for() == ()
