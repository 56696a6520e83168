"""Config files: jobs and routes in TOML, parsed and validated into `Job`s and `Route`s.

```toml
[[job]]
id = 1                 # 0 .. MAX_JOBS-1
slot_base = 0          # first switch slot the job owns
slot_count = 8         # slots owned: slot_base + slot_count <= SLOT_COUNT
mcast_group = 1        # PRE multicast group for the job's results, 1 .. 65535

[[job.worker]]         # worker id 0; then 1, 2, ... in file order
port = 1               # switch port the worker is behind
mac = "02:00:00:00:00:01"
ip = "10.0.0.1"
udp_port = 20306       # optional; default OMNI_UDP_PORT

[[route]]              # plain IPv4 forwarding (optional)
prefix = "10.0.0.1/32"
port = 1
src_mac = "02:00:00:00:01:00"
dst_mac = "02:00:00:00:00:01"
```

Every error names the file and the place in it (`jobs.toml: job[0].worker[1].mac: ...`), and all problems are
reported at once. Unknown keys are errors (with a suggestion), because a misspelt optional key would otherwise
silently take its default.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omnireduce.controller.encoding import parse_ipv4, parse_ipv4_prefix, parse_mac
from omnireduce.controller.errors import BadInputError, ConfigError
from omnireduce.controller.model import Job, Limits, Route, Worker, job_problems, route_problems, validate_jobs_together
from omnireduce.p4src import constants

_TOP_KEYS = ("job", "route")
_JOB_KEYS = ("id", "slot_base", "slot_count", "mcast_group", "worker")
_WORKER_KEYS = ("port", "mac", "ip", "udp_port")
_ROUTE_KEYS = ("prefix", "port", "src_mac", "dst_mac")


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    jobs: tuple[Job, ...] = ()
    routes: tuple[Route, ...] = ()


class _Problems:
    """Collects every problem of a file so the user fixes them in one pass."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError("invalid config:\n  " + "\n  ".join(self.items))


def load_config(path: Path, limits: Limits = Limits()) -> ControllerConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error})") from None
    return parse_config(text, str(path), limits)


def parse_config(text: str, source: str = "<config>", limits: Limits = Limits()) -> ControllerConfig:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    problems = _Problems(source)
    _check_keys(document, _TOP_KEYS, "", problems)
    jobs = [job for index, table in enumerate(_tables(document, "job", "", problems))
            if (job := _job(table, f"job[{index}]", problems)) is not None]
    routes = [route for index, table in enumerate(_tables(document, "route", "", problems))
              if (route := _route(table, f"route[{index}]", problems)) is not None]
    problems.raise_if_any()
    for job in jobs:
        for problem in job_problems(job, limits):
            problems.add("", problem)
    for route in routes:
        for problem in route_problems(route):
            problems.add("", problem)
    problems.raise_if_any()
    try:
        validate_jobs_together(jobs, limits)
    except BadInputError as error:
        raise ConfigError(f"{source}: {error}") from None
    prefixes = [route.prefix for route in routes]
    for prefix in sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1}):
        problems.add("", f"route to {prefix} given more than once")
    problems.raise_if_any()
    return ControllerConfig(tuple(jobs), tuple(routes))


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str, problems: _Problems) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Allowed: {', '.join(allowed)}."
            problems.add(where, f"unknown key {key!r}.{hint}")


def _tables(document: dict[str, Any], key: str, where: str, problems: _Problems) -> list[dict[str, Any]]:
    value = document.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.add(f"{where}{key}", f"must be an array of tables ([[{key}]] sections)")
        return []
    return value


def _get(table: dict[str, Any], key: str, where: str, problems: _Problems, convert: Callable[[Any], Any],
         default: Any = None, required: bool = True) -> Any:
    if key not in table:
        if required:
            problems.add(where, f"missing key {key!r}")
        return default
    try:
        return convert(table[key])
    except BadInputError as error:
        problems.add(f"{where}.{key}", str(error))
        return default


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"expected an integer, got {value!r}")
    return value


def _text(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            raise BadInputError(f"expected a string, got {value!r}")
        return parse(value)
    return convert


def _job(table: dict[str, Any], where: str, problems: _Problems) -> Job | None:
    before = len(problems.items)
    _check_keys(table, _JOB_KEYS, where, problems)
    job_id = _get(table, "id", where, problems, _integer)
    slot_base = _get(table, "slot_base", where, problems, _integer)
    slot_count = _get(table, "slot_count", where, problems, _integer)
    mcast_group = _get(table, "mcast_group", where, problems, _integer)
    worker_tables = _tables(table, "worker", f"{where}.", problems)
    if not worker_tables and "worker" in table and isinstance(table["worker"], list):
        problems.add(where, "has no workers ([[job.worker]] sections)")
    elif "worker" not in table:
        problems.add(where, "missing workers ([[job.worker]] sections)")
    workers = [_worker(worker, f"{where}.worker[{index}]", problems) for index, worker in enumerate(worker_tables)]
    if len(problems.items) > before:
        return None
    return Job(job_id, slot_base, slot_count, mcast_group, tuple(workers))


def _worker(table: dict[str, Any], where: str, problems: _Problems) -> Worker | None:
    _check_keys(table, _WORKER_KEYS, where, problems)
    port = _get(table, "port", where, problems, _integer)
    mac = _get(table, "mac", where, problems, _text(parse_mac))
    ipv4 = _get(table, "ip", where, problems, _text(parse_ipv4))
    udp_port = _get(table, "udp_port", where, problems, _integer, constants.OMNI_UDP_PORT, required=False)
    if None in (port, mac, ipv4):
        return None
    return Worker(port, mac, ipv4, udp_port)


def _route(table: dict[str, Any], where: str, problems: _Problems) -> Route | None:
    _check_keys(table, _ROUTE_KEYS, where, problems)
    prefix = _get(table, "prefix", where, problems, _text(parse_ipv4_prefix))
    port = _get(table, "port", where, problems, _integer)
    src_mac = _get(table, "src_mac", where, problems, _text(parse_mac))
    dst_mac = _get(table, "dst_mac", where, problems, _text(parse_mac))
    if None in (prefix, port, src_mac, dst_mac):
        return None
    return Route(prefix, port, src_mac, dst_mac)
