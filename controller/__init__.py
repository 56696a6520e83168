"""omnireduce.controller: the P4Runtime control plane of omnireduce-p4 (library behind `omnireduce-ctl`).

    from omnireduce.controller import connect, push, add_job, remove_job, read_status, read_counters, reset_job
    from omnireduce.controller import Job, Worker
    from omnireduce.p4src import artifacts

    with connect("127.0.0.1:9559") as switch:            # no pipeline bound yet
        push(switch)                                        # p4src/build/omnireduce.{p4info.txtpb,json}
        add_job(switch, Job(1, slot_base=0, slot_count=8, mcast_group=1,
                            workers=(Worker.parse("1,02:00:00:00:00:01,10.0.0.1"), ...)))
    with connect("127.0.0.1:9559", p4info=artifacts.P4INFO) as switch:   # checks the switch runs it
        print(read_status(switch, job_id=1), read_counters(switch))
        reset_job(switch, 1)
        remove_job(switch, 1)

Every failure is a `ControllerError` subclass (errors.py) whose `exit_code` the CLI returns.
"""

from omnireduce.controller.client import ElectionId
from omnireduce.controller.config import ControllerConfig, load_config, parse_config
from omnireduce.controller.counters import CounterReport, read_counters
from omnireduce.controller.errors import (
    BadInputError,
    ConfigError,
    ControllerError,
    NameLookupError,
    NotPrimaryError,
    P4RuntimeError,
    PipelineMismatchError,
    SwitchUnreachableError,
)
from omnireduce.controller.jobs import InstalledJob, add_job, add_jobs, read_jobs, remove_job, reset_job
from omnireduce.controller.model import Job, Limits, Route, Worker
from omnireduce.controller.pipeline import PipelineFiles, push
from omnireduce.controller.routes import add_routes, read_routes, remove_route
from omnireduce.controller.status import JobStatus, read_status
from omnireduce.controller.switch import DEFAULT_GRPC_ADDR, Switch, connect

__all__ = [
    "DEFAULT_GRPC_ADDR", "BadInputError", "ConfigError", "ControllerConfig", "ControllerError", "CounterReport",
    "ElectionId", "InstalledJob", "Job", "JobStatus", "Limits", "NameLookupError", "NotPrimaryError",
    "P4RuntimeError", "PipelineFiles", "PipelineMismatchError", "Route", "Switch", "SwitchUnreachableError",
    "Worker", "add_job", "add_jobs", "add_routes", "connect", "load_config", "parse_config", "push",
    "read_counters", "read_jobs", "read_routes", "read_status", "remove_job", "remove_route", "reset_job",
]
