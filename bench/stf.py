"""p4c's STF test scripts (`testdata/p4_16_samples/*.stf`): parsed, and run on the softswitch's Device.

An STF file is a list of commands, one a line, `#` starting a comment:

    packet PORT HEX              a frame into PORT (spaces inside HEX are ignored)
    expect PORT HEX[$]           the next frame out of PORT; `*` is a don't-care nibble; the frame may be
                                 longer than HEX unless it ends with `$`; `expect PORT` alone: any frames
    add TABLE [PRIO] K:V ... ACTION(ARG:V, ...)
                                 a table entry; key values `0x0a**` are ternary masks, `V/LEN` or a value
                                 without a length is an lpm prefix (its hex digits' bits); a higher PRIO wins
    setdefault TABLE ACTION(ARG:V, ...)
    mc_mgrp_create G / mc_node_create RID PORT... / mc_node_associate G NODE
                                 the PRE as simple_switch_CLI builds it (node handles count from 0)
    mirroring_add SESSION PORT   a clone session
    wait                         nothing here (the softswitch is synchronous)

What BMv2's STF driver (p4c backends/bmv2) checks, and so what `run_on_device` checks: on every port the STF
names, the frames out are exactly the expected ones in order (ports it does not name have no interface, so
what goes there is lost); `expect PORT` alone accepts anything on PORT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnireduce.softswitch.device import Device
from omnireduce.softswitch.entries import FieldMatch, TableEntry


class StfError(Exception):
    """A command this runner cannot apply (unknown table, action or field, bad value)."""


@dataclass(frozen=True, slots=True)
class Command:
    line: int
    verb: str
    args: str


@dataclass(slots=True)
class Expectation:
    port: int
    pattern: str | None  # upper-case hex with '*' nibbles; None: any frames on the port
    exact_length: bool = False

    def matches(self, frame: bytes) -> bool:
        assert self.pattern is not None
        got = frame.hex().upper()
        if len(got) < len(self.pattern) or (self.exact_length and len(got) != len(self.pattern)):
            return False
        return all(p == "*" or p == g for p, g in zip(self.pattern, got))


@dataclass(slots=True)
class StfScript:
    path: Path
    commands: list[Command]
    ports: set[int] = field(default_factory=set)  # every port a packet or expect names (BMv2's interfaces)
    expected: dict[int, list[Expectation]] = field(default_factory=dict)
    any_ports: set[int] = field(default_factory=set)


def parse_stf(path: Path) -> StfScript:
    commands = []
    script = StfScript(Path(path), commands)
    for number, raw in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        verb, _, args = text.partition(" ")
        command = Command(number, verb, args.strip())
        commands.append(command)
        if verb in ("packet", "expect"):
            port_text, _, data = command.args.partition(" ")
            port = _int(port_text)
            script.ports.add(port)
            if verb == "expect":
                data = "".join(data.split()).upper()
                if not data:
                    script.any_ports.add(port)
                else:
                    exact = data.endswith("$")
                    script.expected.setdefault(port, []).append(Expectation(port, data.rstrip("$"), exact))
    return script


def packet_of(command: Command) -> tuple[int, bytes]:
    port_text, _, data = command.args.partition(" ")
    hexdigits = "".join(data.split())
    try:
        return _int(port_text), bytes.fromhex(hexdigits)
    except ValueError:
        raise StfError(f"line {command.line}: bad packet data {hexdigits[:40]!r}") from None


def check_outputs(script: StfScript, outputs: dict[int, list[bytes]]) -> list[str]:
    """What differs between the frames out of each STF port and the expectations (empty: it passes)."""
    problems = []
    for port in sorted(script.ports):
        if port in script.any_ports:
            continue
        got = outputs.get(port, [])
        want = script.expected.get(port, [])
        if len(got) != len(want):
            problems.append(f"port {port}: expected {len(want)} frames, got {len(got)}"
                            + (f" (first unexpected {got[len(want)].hex()})" if len(got) > len(want) else ""))
            continue
        for i, (expectation, frame) in enumerate(zip(want, got)):
            if not expectation.matches(frame):
                problems.append(f"port {port} frame {i}: expected {expectation.pattern.lower()}"
                                f"{'$' if expectation.exact_length else ''}, got {frame.hex()}")
                break
    return problems


# -- table commands --------------------------------------------------------------------------------------------

def _int(text: str) -> int:
    text = text.strip()
    try:
        return int(text, 0) if not re.fullmatch(r"0[0-9]+", text) else int(text, 10)
    except ValueError:
        raise StfError(f"not a number: {text!r}") from None


_STACK_INDEX = re.compile(r"\$([0-9]+)")


def _key_index(keys: list[str], name: str) -> int:
    """The JSON key a STF key name means: exact, `a$0.b` for `a[0].b`, `.valid`, or a unique suffix."""
    name = _STACK_INDEX.sub(r"[\1]", name)
    candidates = [name, name + "$", name + ".$valid$"]
    if name.endswith(".valid"):
        candidates.append(name[: -len("valid")] + "$valid$")
    for candidate in candidates:
        if candidate in keys:
            return keys.index(candidate)
    found = [i for i, key in enumerate(keys) if key.endswith("." + name) or key.endswith("." + name + "$")
             or (name == "valid" and key.endswith("$valid$"))]
    if len(found) == 1:
        return found[0]
    raise StfError(f"no key field {name!r} (keys: {', '.join(keys)})")


def _key_name(key: dict[str, Any]) -> str:
    if key.get("name"):
        return key["name"]
    target = key.get("target")
    return ".".join(target) if isinstance(target, list) else str(target)


def _lookup_by_suffix(names: list[str], name: str, what: str) -> str:
    if name in names:
        return name
    found = [n for n in names if n.endswith(name) and (n == name or n[-len(name) - 1] == ".")]
    if len(found) == 1:
        return found[0]
    found = [n for n in names if n.endswith(name)]
    if len(found) == 1:
        return found[0]
    raise StfError(f"{'ambiguous' if found else 'no'} {what} {name!r}")


def _ternary(text: str, width: int) -> tuple[int, int]:
    if "&&&" in text:
        value, mask = text.split("&&&")
        return _int(value), _int(mask)
    for prefix, bits in (("0x", 4), ("0b", 1), ("0o", 3)):
        if text.lower().startswith(prefix):
            digits = text[2:]
            value = mask = 0
            for digit in digits:
                value <<= bits
                mask <<= bits
                if digit != "*":
                    value |= int(digit, 1 << bits)
                    mask |= (1 << bits) - 1
            full = (1 << width) - 1
            return value & full, mask & full
    value = _int(text)
    return value, (1 << width) - 1


def _lpm(text: str, width: int) -> tuple[int, int]:
    if "/" in text:
        value, length = text.split("/", 1)
        return _int(value), _int(length)
    if text.lower().startswith(("0x", "0b", "0o")):
        bits = {"0x": 4, "0b": 1, "0o": 3}[text[:2].lower()]
        digits = text[2:]
        value = _int(text[:2] + digits.replace("*", "0"))
        return value, (len(digits) - digits.count("*")) * bits
    value = _int(text)
    return value, width


def _split_action(text: str) -> tuple[str, str, dict[str, str]]:
    """'KEYS... ACTION(ARGS)' -> (keys text, action name, {arg: value})."""
    open_at = text.find("(")
    if open_at < 0:
        raise StfError(f"no action call in {text!r}")
    head = text[:open_at].rstrip()
    keys, _, action = head.rpartition(" ") if " " in head else ("", "", head)
    body = text[open_at + 1:].rstrip()
    if "=" in body.rpartition(")")[2]:
        body = body.rpartition(")")[0] + ")"
    body = body.rstrip(")")
    args = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        name, _, value = part.partition(":")
        args[name.strip()] = value.strip()
    return keys.strip(), action.strip(), args


def _field_widths(program: dict[str, Any]) -> dict[tuple[str, str], int]:
    types = {t["name"]: t for t in program.get("header_types", [])}
    widths = {}
    for header in program.get("headers", []):
        for spec in types.get(header.get("header_type"), {}).get("fields", []):
            widths[(header["name"], spec[0])] = spec[1] if isinstance(spec[1], int) else 0
    return widths


@dataclass(frozen=True, slots=True)
class PreState:
    groups: dict[int, list[tuple[int, int]]]  # group -> [(port, rid)]
    sessions: dict[int, int]  # clone session -> port


class StfControl:
    """Turns an STF's control-plane commands into softswitch entries (`TableEntry`, PRE replicas) and into
    the simple_switch_CLI commands that do the same on BMv2, from the BMv2 JSON alone (so a program the
    softswitch refuses can still be configured on BMv2)."""

    def __init__(self, program: dict[str, Any]) -> None:
        self.actions: dict[str, dict[str, Any]] = {}
        for action in program.get("actions", []):
            self.actions.setdefault(action["name"], action)
        self.tables = {t["name"]: t for p in program.get("pipelines", []) for t in p.get("tables", [])}
        self.widths = _field_widths(program)
        self.nodes: list[tuple[int, list[int]]] = []  # mc node handle -> (rid, ports)
        self.groups: dict[int, list[tuple[int, int]]] = {}

    # -- names --------------------------------------------------------------------------------------------------
    def table(self, name: str) -> dict[str, Any]:
        return self.tables[_lookup_by_suffix(list(self.tables), name, "table")]

    def action(self, table: dict[str, Any], name: str) -> str:
        return _lookup_by_suffix(list(dict.fromkeys(table.get("actions", []))), name, f"action of {table['name']}")

    def key_width(self, key: dict[str, Any]) -> int:
        target = key.get("target")
        if key.get("match_type") == "valid" or not isinstance(target, list):
            return 1
        if target[1] == "$valid$":
            return 1
        return self.widths.get((target[0], target[1]), 0)

    def params(self, action: str, args: dict[str, str]) -> tuple[int, ...]:
        values = []
        for spec in self.actions[action].get("runtime_data", []):
            if spec["name"] not in args:
                raise StfError(f"action {action} lacks argument {spec['name']!r}")
            values.append(_int(args[spec["name"]]) & ((1 << spec["bitwidth"]) - 1))
        return tuple(values)

    # -- commands -----------------------------------------------------------------------------------------------
    def table_entry(self, args: str) -> TableEntry:
        """`add TABLE [PRIO] KEY:VALUE ... ACTION(ARG:VALUE, ...)` as an entry (priority: higher wins)."""
        table_name, _, rest = args.partition(" ")
        table = self.table(table_name)
        first, _, after = rest.strip().partition(" ")
        priority = None
        if re.fullmatch(r"[0-9]+", first):
            priority, rest = int(first), after
        keys_text, action_name, action_args = _split_action(rest)
        action = self.action(table, action_name)
        keys = table.get("key", [])
        names = [_key_name(k) for k in keys]
        values: list[str | None] = [None] * len(names)
        for word in keys_text.split():
            key, _, value = word.partition(":")
            values[_key_index(names, key)] = value
        matches = []
        for key, text in zip(keys, values):
            kind, width = key["match_type"], self.key_width(key)
            full = (1 << width) - 1
            if kind in ("exact", "valid"):
                matches.append(FieldMatch(kind, _int(text) & full if text is not None else 0))
            elif kind == "lpm":
                value, length = _lpm(text, width) if text is not None else (0, 0)
                length = min(length, width)
                matches.append(FieldMatch("lpm", value & full & ~((1 << (width - length)) - 1), prefix_len=length))
            elif kind in ("ternary", "optional"):
                value, mask = _ternary(text, width) if text is not None else (0, 0)
                matches.append(FieldMatch("ternary" if kind == "optional" and mask not in (0, full) else kind,
                                          value & mask, mask=mask))
            elif kind == "range":
                low, _, high = (text or f"0->{full}").partition("->")
                matches.append(FieldMatch("range", _int(low), high=_int(high or low)))
            else:
                raise StfError(f"table {table['name']}: match kind {kind}")
        needs_priority = any(k["match_type"] in ("ternary", "range", "optional") for k in keys)
        # STF: a higher PRIO wins, as on the softswitch (BMv2's driver turns it into 10000 - PRIO, lower wins).
        prio = (priority or 0) + 1 if needs_priority else 0
        return TableEntry(table["name"], tuple(matches), action, self.params(action, action_args), prio)

    def default_action(self, args: str) -> tuple[str, str, tuple[int, ...]]:
        table_name, _, rest = args.partition(" ")
        table = self.table(table_name)
        _, action_name, action_args = _split_action(rest.strip())
        action = self.action(table, action_name)
        return table["name"], action, self.params(action, action_args)

    def pre_command(self, verb: str, args: str) -> tuple[str, int, list[tuple[int, int]]] | None:
        """A PRE change: ("group", id, replicas) or ("session", id, [(port, 0)]); None for a node creation."""
        words = [_int(w) for w in args.split()]
        if verb == "mc_mgrp_create":
            self.groups[words[0]] = []
            return ("group", words[0], [])
        if verb == "mc_node_create":
            self.nodes.append((words[0], words[1:]))
            return None
        if verb == "mc_node_associate":
            rid, ports = self.nodes[words[1]]
            self.groups.setdefault(words[0], []).extend((port, rid) for port in ports)
            return ("group", words[0], list(self.groups[words[0]]))
        if verb == "mirroring_add":
            return ("session", words[0], [(words[1], 0)])
        raise StfError(f"unsupported STF command '{verb}'")

    def cli_command(self, command: Command) -> str | None:
        """The simple_switch_CLI line for a control-plane command (None: nothing to do)."""
        verb = command.verb
        if verb == "wait":
            return None
        if verb == "add":
            entry = self.table_entry(command.args)
            parts = []
            for match in entry.key:
                if match.kind == "lpm":
                    parts.append(f"{match.value}/{match.prefix_len}")
                elif match.kind in ("ternary", "optional"):
                    parts.append(f"{match.value}&&&{match.mask}")
                elif match.kind == "range":
                    parts.append(f"{match.value}->{match.high}")
                else:
                    parts.append(str(match.value))
            line = f"table_add {entry.table} {entry.action} {' '.join(parts)} => {' '.join(map(str, entry.params))}"
            return line + (f" {10001 - entry.priority}" if entry.priority else "")
        if verb == "setdefault":
            table, action, params = self.default_action(command.args)
            return f"table_set_default {table} {action} {' '.join(map(str, params))}".rstrip()
        if verb in ("mc_mgrp_create", "mc_node_create", "mc_node_associate", "mirroring_add"):
            return f"{verb} {command.args}"
        raise StfError(f"line {command.line}: unsupported STF command '{verb}'")

    def apply(self, device: Device, command: Command) -> None:
        """Do a control-plane command on a Device, as simple_switch_CLI would on BMv2."""
        try:
            if command.verb == "wait":
                return
            if command.verb == "add":
                device.table_insert(self.table_entry(command.args))
            elif command.verb == "setdefault":
                device.table_set_default(*self.default_action(command.args))
            else:
                change = self.pre_command(command.verb, command.args)
                if change is None:
                    return
                kind, ident, replicas = change
                if kind == "session":
                    device.clone_session_insert(ident, replicas)
                elif ident in device.mc_group_read():
                    device.mc_group_modify(ident, replicas)
                else:
                    device.mc_group_insert(ident, replicas)
        except StfError as error:
            raise StfError(f"line {command.line}: {error}") from None


def run_on_device(device: Device, program: dict[str, Any], script: StfScript) -> tuple[dict[int, list[bytes]], list[str]]:
    """Run the STF's commands in order on a Device that has the program loaded; return the frames out of the
    STF's ports and what differs from the expectations."""
    control = StfControl(program)
    outputs: dict[int, list[bytes]] = {port: [] for port in script.ports}
    for command in script.commands:
        if command.verb == "expect":
            continue
        if command.verb == "packet":
            port, frame = packet_of(command)
            for out_port, out in device.process_packet(port, frame):
                if out_port in outputs:
                    outputs[out_port].append(out)
            continue
        control.apply(device, command)
    return outputs, check_outputs(script, outputs)
