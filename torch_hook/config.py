"""Where the hook finds the switch: a small frozen config read from a TOML or JSON file, or from environment variables.

```toml
switch = "10.0.0.254"          # the aggregator's IPv4 address, optionally with ":PORT" (default OMNI_UDP_PORT)
job = 0                        # job id, as installed on the switch (omnireduce-ctl job add)
slots = 16                     # the job's slot count, as installed
workers = 2                    # optional: checked against torch.distributed's world size
join_timeout = 30.0            # optional, seconds: the scale round of every bucket (peers must arrive by then)
stall_timeout = 30.0           # optional, seconds: no result for this long in the middle of a bucket
deadline = 120.0               # optional, seconds: one bucket's whole all-reduce

[[rank]]                       # optional, one table per rank, in rank order
bind = "10.0.0.1:20306"        # the rank's own UDP socket (kernel UDP: a Mininet host or a real NIC)

# ...or, for the loopback softswitch (whole Ethernet frames to the rank's switch port), either its shared-memory
# ring file (the switch's -i N@shm:PATH; no socket, what `python -m omnireduce.torch.loopback` gives by default):
# frame_ring = "/dev/shm/omnireduce-rings-x/port1"
# ...or its UDP socket (the switch's -i N@udp:...), with the rank's own:
# bind = "127.0.0.1:40001"     # the rank's own UDP socket on loopback
# frame_peer = "127.0.0.1:40002"   # the softswitch port's UDP socket
# ...and in both cases what the controller installed for the rank:
# worker_addr = "10.0.0.1:20306"   # the rank's IPv4 address and UDP port inside the frames (as installed)
# mac = "02:00:00:00:00:01"        # the rank's MAC inside the frames (as installed)
# switch_mac = "02:00:00:00:00:fe" # the aggregator's MAC
```

The same keys make a JSON object (`"rank": [{...}, ...]`). `python -m omnireduce.torch.loopback` starts a
loopback softswitch with a job installed and prints this config for it.

Environment: `OMNIREDUCE_TORCH_CONFIG=PATH` names such a file; without it, `OMNIREDUCE_SWITCH=IP[:PORT]`,
`OMNIREDUCE_JOB` and `OMNIREDUCE_SLOTS` (and optionally `OMNIREDUCE_WORKERS`) make a kernel-UDP config in which
every rank binds the protocol's port on all addresses.

Every problem is reported at once, naming the file and the key; unknown keys are errors, since a misspelt optional
key would otherwise silently take its default. This module needs no PyTorch.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Mapping

from omnireduce.addresses import format_mac, parse_mac
from omnireduce.host import AgentConfig, FrameLink, Timeouts, TransportKind
from omnireduce.host.wire import Endpoint
from omnireduce.p4src import constants as C

CONFIG_VARIABLE = "OMNIREDUCE_TORCH_CONFIG"
SWITCH_VARIABLE = "OMNIREDUCE_SWITCH"
JOB_VARIABLE = "OMNIREDUCE_JOB"
SLOTS_VARIABLE = "OMNIREDUCE_SLOTS"
WORKERS_VARIABLE = "OMNIREDUCE_WORKERS"

_TOP_KEYS = ("switch", "job", "slots", "workers", "join_timeout", "stall_timeout", "deadline", "rank")
_RANK_KEYS = ("bind", "frame_peer", "frame_ring", "worker_addr", "mac", "switch_mac")
#: Where a frame link goes: one of these (a UDP port of the switch, or a ring file of it)...
_FRAME_ENDS = ("frame_peer", "frame_ring")
#: ...and what it writes in the frames, needed with either.
_FRAME_KEYS = ("worker_addr", "mac", "switch_mac")


class HookConfigError(ValueError):
    """The hook's config cannot be used; the message lists every problem and where it is."""


Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class FrameSettings:
    """A rank's link to a loopback softswitch port (see omnireduce.host.FrameLink): the port's UDP socket (`peer`)
    or its shared-memory ring file (`ring`), exactly one; and the rank's MAC, IPv4 address and UDP port inside the
    frames, as the controller installed them."""

    peer: Address | None
    worker_ip: IPv4Address
    worker_port: int
    mac: bytes
    switch_mac: bytes
    ring: Path | None = None

    def __post_init__(self) -> None:
        if (self.peer is None) == (self.ring is None):
            raise HookConfigError("a frame link goes to the switch port's UDP socket (frame_peer) or to its ring file "
                                  "(frame_ring): exactly one of them")


@dataclass(frozen=True, slots=True)
class RankSettings:
    """One rank's own socket (`bind`), and its frame link when it talks to a loopback softswitch."""

    bind: Address = ("0.0.0.0", C.OMNI_UDP_PORT)
    frame: FrameSettings | None = None


@dataclass(frozen=True, slots=True)
class HookConfig:
    """The switch and the job every rank's agent uses; `ranks[r]` (if given) is rank r's own socket and link."""

    switch_ip: IPv4Address
    job_id: int
    slots: int
    switch_port: int = C.OMNI_UDP_PORT
    workers: int | None = None
    ranks: tuple[RankSettings, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.job_id <= 0xFFFF:
            problems.append(f"job {self.job_id} does not fit the 16-bit job id")
        if not 1 <= self.slots <= C.SLOT_COUNT:
            problems.append(f"slots {self.slots} must be in 1..{C.SLOT_COUNT} (the switch's SLOT_COUNT)")
        if self.workers is not None and not 1 <= self.workers <= C.MAX_WORKERS:
            problems.append(f"workers {self.workers} must be in 1..{C.MAX_WORKERS} (MAX_WORKERS)")
        if self.workers is not None and self.ranks and len(self.ranks) != self.workers:
            problems.append(f"{len(self.ranks)} [[rank]] tables for {self.workers} workers")
        if problems:
            raise HookConfigError("invalid omnireduce hook config:\n  " + "\n  ".join(problems))

    def agent_config(self, rank: int, world_size: int) -> AgentConfig:
        """The agent config of `rank` in a job of `world_size` ranks; HookConfigError when they do not fit."""
        if self.workers is not None and self.workers != world_size:
            raise HookConfigError(f"the config is for {self.workers} workers but torch.distributed's world size is "
                                  f"{world_size}: install the job for {world_size} workers (or fix 'workers')")
        if world_size > C.MAX_WORKERS:
            raise HookConfigError(f"world size {world_size} is more than the switch's {C.MAX_WORKERS} workers a job")
        if self.ranks and rank >= len(self.ranks):
            raise HookConfigError(f"rank {rank} has no [[rank]] table (the config has {len(self.ranks)})")
        settings = self.ranks[rank] if self.ranks else RankSettings()
        common = dict(switch_ip=self.switch_ip, switch_port=self.switch_port, job_id=self.job_id, worker_id=rank,
                      workers=world_size, slots=self.slots, bind=settings.bind, timeouts=self.timeouts)
        frame = settings.frame
        if frame is None:
            return AgentConfig(transport=TransportKind.KERNEL_UDP, **common)
        worker = Endpoint(frame.mac, frame.worker_ip, frame.worker_port)
        if frame.ring is not None:
            link = FrameLink(bind=None, peer=None, worker=worker, switch_mac=frame.switch_mac, ring=frame.ring)
            return AgentConfig(transport=TransportKind.SHM, frame_link=link, **common)
        link = FrameLink(bind=settings.bind, peer=frame.peer, worker=worker, switch_mac=frame.switch_mac)
        return AgentConfig(transport=TransportKind.FRAME, frame_link=link, **common)

    # --- writing ---------------------------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """The config in the file format's keys (what `parse_config` reads back)."""
        data: dict[str, Any] = {"switch": f"{self.switch_ip}:{self.switch_port}", "job": self.job_id,
                                "slots": self.slots}
        if self.workers is not None:
            data["workers"] = self.workers
        data["join_timeout"] = self.timeouts.join
        data["stall_timeout"] = self.timeouts.stall
        if self.timeouts.deadline is not None:
            data["deadline"] = self.timeouts.deadline
        ranks = []
        for settings in self.ranks:
            frame = settings.frame
            entry: dict[str, Any] = {}
            if frame is None or frame.ring is None:  # a ring link has no socket of its own
                entry["bind"] = _format_address(settings.bind)
            if frame is not None:
                if frame.ring is not None:
                    entry["frame_ring"] = str(frame.ring)
                else:
                    assert frame.peer is not None
                    entry["frame_peer"] = _format_address(frame.peer)
                entry.update(worker_addr=f"{frame.worker_ip}:{frame.worker_port}", mac=format_mac(frame.mac),
                             switch_mac=format_mac(frame.switch_mac))
            ranks.append(entry)
        if ranks:
            data["rank"] = ranks
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def to_toml(self) -> str:
        data = self.as_dict()
        lines = [f"{key} = {_toml_value(value)}" for key, value in data.items() if key != "rank"]
        for entry in data.get("rank", []):
            lines += ["", "[[rank]]"] + [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
        return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    # json.dumps writes strings, integers and finite floats exactly as TOML wants them.
    return json.dumps(value)


def _format_address(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


# --- reading -----------------------------------------------------------------------------------------------------


class _Problems:
    """Collects every problem of a config so that the user fixes them in one pass."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{self.source}: {where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise HookConfigError("invalid omnireduce hook config:\n  " + "\n  ".join(self.items))


def _address(text: Any, where: str, problems: _Problems, default_port: int | None = None,
             ipv4: bool = True) -> Address | None:
    if not isinstance(text, str):
        problems.add(where, f"expected a string 'IP:PORT', got {text!r}")
        return None
    host, separator, port_text = text.rpartition(":")
    if not separator:
        if default_port is None:
            problems.add(where, f"{text!r} has no ':PORT'")
            return None
        host, port_text = text, str(default_port)
    if ipv4:
        try:
            IPv4Address(host)
        except ValueError:
            problems.add(where, f"{host!r} is not an IPv4 address")
            return None
    if not (port_text.isascii() and port_text.isdigit() and 0 <= int(port_text) <= 0xFFFF):
        problems.add(where, f"port {port_text!r} is not a number in 0..65535")
        return None
    return host, int(port_text)


def _integer(value: Any, where: str, problems: _Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(where, f"expected an integer, got {value!r}")
        return None
    return value


def _seconds(value: Any, where: str, problems: _Problems) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        problems.add(where, f"expected a positive number of seconds, got {value!r}")
        return None
    return float(value)


def _mac(value: Any, where: str, problems: _Problems) -> bytes | None:
    try:
        return parse_mac(value)
    except ValueError as error:
        problems.add(where, str(error))
        return None


def _ring_path(value: Any, where: str, problems: _Problems) -> Path | None:
    if not isinstance(value, str) or not value or "\0" in value:
        problems.add(where, f"expected the path of the switch port's ring file, got {value!r}")
        return None
    return Path(value)


def _unknown_keys(table: Mapping[str, Any], known: tuple[str, ...], where: str, problems: _Problems) -> None:
    for key in table:
        if key not in known:
            problems.add(f"{where}{key}", f"unknown key (known: {', '.join(known)})")


def _rank(entry: Any, index: int, problems: _Problems) -> RankSettings | None:
    where = f"rank[{index}]."
    if not isinstance(entry, dict):
        problems.add(f"rank[{index}]", f"expected a table, got {entry!r}")
        return None
    _unknown_keys(entry, _RANK_KEYS, where, problems)
    bind = _address(entry["bind"], where + "bind", problems) if "bind" in entry else RankSettings().bind
    ends = [key for key in _FRAME_ENDS if key in entry]
    present = [key for key in _FRAME_KEYS if key in entry]
    frame = None
    if len(ends) > 1:
        problems.add(f"rank[{index}]", "a frame link goes to frame_peer (the switch port's UDP socket) or to "
                                       "frame_ring (its ring file), not both")
    elif (ends or present) and (not ends or len(present) != len(_FRAME_KEYS)):
        missing = [key for key in _FRAME_KEYS if key not in entry] + ([] if ends else ["frame_peer or frame_ring"])
        problems.add(f"rank[{index}]", f"a frame link (loopback softswitch) needs frame_peer or frame_ring, and all "
                                       f"of {', '.join(_FRAME_KEYS)}; missing {', '.join(missing)}")
    elif ends:
        peer = ring = None
        if ends[0] == "frame_peer":
            peer = _address(entry["frame_peer"], where + "frame_peer", problems)
            if "bind" not in entry:
                problems.add(f"rank[{index}]", "a frame link to a UDP port needs 'bind' (the rank's own loopback "
                                               "socket)")
        else:
            ring = _ring_path(entry["frame_ring"], where + "frame_ring", problems)
        worker = _address(entry["worker_addr"], where + "worker_addr", problems, default_port=C.OMNI_UDP_PORT)
        mac = _mac(entry["mac"], where + "mac", problems)
        switch_mac = _mac(entry["switch_mac"], where + "switch_mac", problems)
        if (peer or ring) and worker and mac and switch_mac:
            frame = FrameSettings(peer, IPv4Address(worker[0]), worker[1], mac, switch_mac, ring)
    if bind is None:
        return None
    return RankSettings(bind, frame)


def config_from_mapping(data: Mapping[str, Any], source: str = "<config>") -> HookConfig:
    """Validate a parsed document (TOML or JSON) into a HookConfig; HookConfigError lists every problem."""
    problems = _Problems(source)
    if not isinstance(data, Mapping):
        problems.add("", "expected a table/object at the top")
        problems.raise_if_any()
    _unknown_keys(data, _TOP_KEYS, "", problems)
    for key in ("switch", "job", "slots"):
        if key not in data:
            problems.add(key, "missing (required)")
    switch = _address(data["switch"], "switch", problems, default_port=C.OMNI_UDP_PORT) if "switch" in data else None
    job = _integer(data["job"], "job", problems) if "job" in data else None
    slots = _integer(data["slots"], "slots", problems) if "slots" in data else None
    workers = _integer(data["workers"], "workers", problems) if "workers" in data else None
    timeouts = Timeouts()
    limits = {}
    for key, name in (("join_timeout", "join"), ("stall_timeout", "stall"), ("deadline", "deadline")):
        if key in data:
            limits[name] = _seconds(data[key], key, problems)
    ranks: list[RankSettings] = []
    raw_ranks = data.get("rank", [])
    if not isinstance(raw_ranks, list):
        problems.add("rank", f"expected a list of tables ([[rank]]), got {raw_ranks!r}")
        raw_ranks = []
    for index, entry in enumerate(raw_ranks):
        settings = _rank(entry, index, problems)
        if settings is not None:
            ranks.append(settings)
    problems.raise_if_any()
    assert switch is not None and job is not None and slots is not None  # problems would have raised
    try:
        timeouts = Timeouts(**{key: value for key, value in limits.items() if value is not None})
        return HookConfig(switch_ip=IPv4Address(switch[0]), switch_port=switch[1], job_id=job, slots=slots,
                          workers=workers, ranks=tuple(ranks), timeouts=timeouts)
    except HookConfigError as error:
        raise HookConfigError(f"{source}: {error}") from None
    except ValueError as error:
        raise HookConfigError(f"{source}: {error}") from None


def parse_config(text: str, source: str = "<config>") -> HookConfig:
    """A config from TOML text, or JSON text when it starts with '{'."""
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise HookConfigError(f"{source}: not valid TOML or JSON: {error}") from None
    return config_from_mapping(data, source)


def load_config(path: str | os.PathLike[str]) -> HookConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HookConfigError(f"cannot read the omnireduce hook config {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise HookConfigError(f"{path}: not UTF-8 text ({error})") from None
    return parse_config(text, str(path))


def config_from_env(environ: Mapping[str, str] | None = None) -> HookConfig:
    """The config named by OMNIREDUCE_TORCH_CONFIG, else one made of OMNIREDUCE_SWITCH/_JOB/_SLOTS[/_WORKERS]."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_VARIABLE):
        return load_config(environ[CONFIG_VARIABLE])
    if SWITCH_VARIABLE not in environ:
        raise HookConfigError(f"no omnireduce hook config: set {CONFIG_VARIABLE}=PATH (a TOML or JSON file) or "
                              f"{SWITCH_VARIABLE}=IP[:PORT], {JOB_VARIABLE} and {SLOTS_VARIABLE}")
    problems = _Problems("environment")
    data: dict[str, Any] = {"switch": environ[SWITCH_VARIABLE]}
    for key, variable in (("job", JOB_VARIABLE), ("slots", SLOTS_VARIABLE), ("workers", WORKERS_VARIABLE)):
        if variable in environ:
            text = environ[variable].strip()
            if text.isascii() and text.lstrip("-").isdigit():
                data[key] = int(text)
            else:
                problems.add(variable, f"expected an integer, got {environ[variable]!r}")
        elif key != "workers":
            problems.add(variable, "missing (required with " + SWITCH_VARIABLE + ")")
    problems.raise_if_any()
    return config_from_mapping(data, "environment")
