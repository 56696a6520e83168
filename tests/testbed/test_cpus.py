# Run: /work/main/.venv/bin/pytest tests/testbed/test_cpus.py -q
"""The loopback testbed's CPU plan: the switch on a CPU of its own, the agents on the rest, and when not to."""

from __future__ import annotations

import pytest

from omnireduce.testbed.cpus import MIN_CPUS_TO_PIN, CpuPinning, CpuPlanError, cpu_list, plan_cpus


def test_the_switch_takes_the_highest_cpu_and_the_agents_the_others() -> None:
    plan = plan_cpus(CpuPinning.AUTO, range(16))
    assert plan.pinned
    assert plan.switch == {15}
    assert plan.agents == set(range(15))
    assert plan.describe() == "switch on CPU 15, agents on CPUs 0-14"


def test_a_narrowed_affinity_is_respected() -> None:
    plan = plan_cpus(CpuPinning.ON, {2, 3, 5, 9})
    assert plan.switch == {9} and plan.agents == {2, 3, 5}
    assert plan.describe() == "switch on CPU 9, agents on CPUs 2-3,5"


def test_auto_leaves_small_machines_alone_and_says_why() -> None:
    plan = plan_cpus(CpuPinning.AUTO, range(MIN_CPUS_TO_PIN - 1))
    assert not plan.pinned and plan.agents is None
    assert plan.describe() == f"not pinned ({MIN_CPUS_TO_PIN - 1} CPUs: --cpu-pinning auto pins from " \
                              f"{MIN_CPUS_TO_PIN} on)"
    assert plan_cpus(CpuPinning.AUTO, range(MIN_CPUS_TO_PIN)).pinned


def test_on_pins_two_cpus_and_refuses_one() -> None:
    plan = plan_cpus(CpuPinning.ON, {0, 1})
    assert plan.describe() == "switch on CPU 1, agents on CPU 0"
    with pytest.raises(CpuPlanError, match=r"needs at least 2 CPUs .* may use 1 \(CPU 7\)"):
        plan_cpus(CpuPinning.ON, {7})


def test_off_never_pins() -> None:
    plan = plan_cpus(CpuPinning.OFF, range(64))
    assert not plan.pinned and plan.describe() == "not pinned (--cpu-pinning off)"


@pytest.mark.parametrize("cpus, text", [
    ({0}, "0"), ({0, 1, 2}, "0-2"), ({0, 2, 4}, "0,2,4"), ({1, 2, 3, 7, 8, 10}, "1-3,7-8,10"), (set(), ""),
])
def test_cpu_list_writes_the_kernels_cpulist_format(cpus: set[int], text: str) -> None:
    assert cpu_list(cpus) == text
