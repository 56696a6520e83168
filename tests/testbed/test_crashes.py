# Run: .venv/bin/pytest tests/testbed/test_crashes.py -q
"""Crashes of a running job, each part a process killed with SIGKILL (tests/testbed/rig.py): a worker, the switch,
the controller. What must hold: the survivors end with a clear error within their time limits (waited for by polling
with a deadline, never timed), and the documented recovery makes the job usable again, shown by a verified
all-reduce; a controller's death does not disturb the job at all. Only 127.0.0.1 is used."""

from __future__ import annotations

import json
import sys
import textwrap

from omnireduce.host.cli import EXIT_NETWORK, EXIT_OK
from omnireduce.testbed.processes import ProcessSpec
from omnireduce.testbed.provision import plan_to_json
from tests.polling import wait_until

from .rig import PROCESS_DEADLINE_S, Rig

#: Agents in the runs that get interrupted: far more all-reduces than the test lets them do.
ENDLESS = 100_000
#: The survivors' stall limit: how long a worker waits without any result before it gives up.
STALL_S = 3.0


def verified(rig: Rig, processes) -> None:
    """Every agent exited 0 and its --verify found the last all-reduce's sum right."""
    codes = rig.wait_for_exit(processes)
    for process, code in zip(processes, codes):
        report = rig.report(process)
        assert code == EXIT_OK and report.raw is not None and report.raw["verify"]["ok"], process.failure_message()


def test_a_worker_killed_mid_allreduce_stalls_the_others_clearly_and_a_reset_makes_the_job_usable(tmp_path):
    with Rig(tmp_path) as rig:
        rig.start_switch()
        rig.set_up()
        agents = rig.start_agents("doomed", repeat=ENDLESS,
                                  extra=("--stall-timeout", str(STALL_S), "--join-timeout", str(STALL_S)))
        rig.wait_for_progress("doomed", 1)
        rig.kill(agents[1])
        # The others cannot complete a round without worker 1: each gives up after its limit, saying why. The kill
        # lands in a data tensor (Stalled after the stall limit) or, as often with all-reduces of milliseconds,
        # in the next all-reduce's scale round, which waits for every worker to join (WorkerMissing after the
        # join limit); both limits are STALL_S here.
        codes = rig.wait_for_exit([agents[0], agents[2]])
        for agent, code in zip((agents[0], agents[2]), codes):
            error = rig.report(agent).error
            assert code == EXIT_NETWORK, agent.failure_message()
            if error.startswith("Stalled: "):
                assert f"no result for {STALL_S} s" in error, error
                assert "a worker or the switch went away" in error and "omnireduce-ctl status --job 0" in error, error
            else:
                assert error.startswith("WorkerMissing: ") and f"within {STALL_S} s" in error, error
                assert "a worker of the job never showed up" in error, error
        # The controller names the worker the open columns wait for: the dead one.
        status = json.loads(rig.ctl("status", "--job", "0").stdout)[0]
        waiting = {worker for slot in status["slots"] for worker in slot["waiting_for"]}
        assert waiting == {1}, status["slots"]
        # The switch still holds the interrupted all-reduce: new agents (tensor 0, set 0) are out of step with it
        # and get nowhere (their packets are stale to the switch).
        stale = rig.start_agents("unreset", extra=("--join-timeout", "3"))
        for agent, code in zip(stale, rig.wait_for_exit(stale)):
            assert code == EXIT_NETWORK and rig.report(agent).error.startswith("WorkerMissing: "), \
                agent.failure_message()
        # omnireduce-ctl reset clears the job's slots: a fresh set of agents all-reduces correctly.
        reset = rig.ctl("reset", "--job", "0")
        assert reset.returncode == 0, reset.stderr
        assert json.loads(reset.stdout)["cells_written"] > 0
        verified(rig, rig.start_agents("after-reset", repeat=2, seed=1))


def test_a_restarted_switch_is_reported_by_the_agents_and_a_new_push_and_job_recover(tmp_path):
    with Rig(tmp_path) as rig:
        switch = rig.start_switch()
        rig.set_up()
        agents = rig.start_agents("before", repeat=ENDLESS, extra=("--stall-timeout", str(STALL_S)))
        rig.wait_for_progress("before", 0)
        rig.kill(switch)
        for agent, code in zip(agents, rig.wait_for_exit(agents)):
            error = rig.report(agent).error
            assert code == EXIT_NETWORK, agent.failure_message()
            # On loopback the kernel reports the closed port at once; on a network the switch just goes silent.
            assert (error.startswith("SwitchUnreachable: ") and "is unreachable" in error) or (
                error.startswith("Stalled: ") and "the switch went away" in error), error
        # The restarted switch has lost everything: the controller sees no pipeline, and says what to do.
        rig.start_switch("switch-restarted")
        listing = rig.ctl("job", "list")
        assert listing.returncode == 6 and "runs no pipeline; push one first" in listing.stderr
        rig.set_up()  # push the pipeline, install the job again
        verified(rig, rig.start_agents("after-restart", repeat=2, seed=2))


CONTROLLER = textwrap.dedent("""
    import json, sys, time
    from omnireduce.controller import ElectionId, connect, read_status
    from omnireduce.controller.jobs import add_jobs
    from omnireduce.controller.pipeline import push
    from omnireduce.testbed.provision import controller_jobs, plan_from_json
    plan = plan_from_json(json.loads(sys.argv[2]))
    with connect(sys.argv[1], election_id=ElectionId(0, 10), timeout=30) as switch:
        push(switch)
        add_jobs(switch, controller_jobs(plan))
        print("installed", flush=True)
        while True:  # a controller that stays connected as primary, watching the job
            read_status(switch, job_id=0)
            time.sleep(0.1)
""")


def test_a_controller_killed_while_a_job_runs_leaves_it_running_and_a_new_one_reads_it_back(tmp_path):
    with Rig(tmp_path) as rig:
        rig.start_switch()
        controller = rig.supervisor.start(ProcessSpec("controller", (
            sys.executable, "-c", CONTROLLER, rig.grpc_addr, json.dumps(plan_to_json(rig.plan)))))
        wait_until(lambda: "installed" in controller.stdout_path.read_text(), PROCESS_DEADLINE_S,
                   "the controller to install the job", abort=lambda: None if controller.alive() else
                   controller.failure_message())
        installed = json.loads(rig.ctl("job", "list").stdout)
        agents = rig.start_agents("running", repeat=60, seed=3)
        done_at_kill = rig.wait_for_progress("running", 0)
        rig.kill(controller)
        # A new controller finds the job exactly as the first one installed it, and its counters moving: reading
        # needs no arbitration.
        assert json.loads(rig.ctl("job", "list").stdout) == installed
        status = json.loads(rig.ctl("status", "--job", "0").stdout)
        assert status[0]["job"]["job_id"] == 0
        # To write it must be primary, which takes an election id at least as high as any the switch has seen
        # (P4Runtime: a dead primary's id is not given to a lower one); `info` says which.
        info = json.loads(rig.ctl("--election-id", "0,5", "info").stdout)
        assert info["primary"] is False and "(primary election id 0,10): no primary" in info["arbitration"], info
        route = ["route", "add", "10.0.1.0/24", "--port", "1", "--src-mac", "02:00:00:00:01:00",
                 "--dst-mac", "02:00:00:00:00:01"]
        assert rig.ctl("--election-id", "0,5", *route).returncode == 5  # not the primary
        info = json.loads(rig.ctl("--election-id", "0,10", "info").stdout)
        assert info["primary"] is True, info
        written = rig.ctl("--election-id", "0,11", *route)
        assert written.returncode == 0, written.stderr
        # The job never noticed: the agents went on past the controller's death and every result is right.
        rig.wait_for_progress("running", 0, beyond=done_at_kill)
        verified(rig, agents)
        counters = json.loads(rig.ctl("counters").stdout)
        assert counters["jobs"]["0"]["contributions"]["packets"] > 0
