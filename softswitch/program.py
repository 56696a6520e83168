"""A typed, validated view of the BMv2 JSON that p4c-bm2-ss emits for v1model (docs/JSON_format.md of
p4lang/behavioral-model, format 2.x).

Only the structure is modelled here; expressions and primitive calls stay as their JSON objects, which the
code generators (softswitch/codegen/) translate once at load time. Anything this target does not implement
is refused here, or by the generators, with an `UnsupportedProgram` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument, UnsupportedProgram

Json = dict[str, Any]

# Core errors BMv2 knows even when a JSON does not list them (ErrorCodeMap::make_with_core).
CORE_ERRORS = (
    "NoError",
    "PacketTooShort",
    "NoMatch",
    "StackOutOfBounds",
    "HeaderTooShort",
    "ParserTimeout",
    "ParserInvalidArgument",
)

# Top-level arrays that must be empty (or absent) because this target does not implement them.
_UNSUPPORTED_IF_NONEMPTY = {
    "extern_instances": "extern instances",
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    width: int  # a varbit field: its largest width (the header type's max_length less its fixed fields)
    signed: bool
    varbit: bool = False


@dataclass(frozen=True, slots=True)
class HeaderType:
    name: str
    fields: tuple[FieldSpec, ...]

    @property
    def bit_width(self) -> int:
        """The width of the fixed fields (a varbit field adds its current width to a header's length)."""
        return sum(f.width for f in self.fields if not f.varbit)

    @property
    def varbit(self) -> FieldSpec | None:
        return next((f for f in self.fields if f.varbit), None)


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    type: HeaderType
    metadata: bool


@dataclass(frozen=True, slots=True)
class HeaderStack:
    """`header_stacks`: a stack's elements are ordinary headers, NAME[0] ... NAME[size - 1]."""

    name: str
    type: HeaderType
    elements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HeaderUnion:
    """`header_unions`: at most one member header is valid; making one valid invalidates the others."""

    name: str
    type_name: str
    members: tuple[tuple[str, str], ...]  # (member name, header instance), in the union type's order


@dataclass(frozen=True, slots=True)
class UnionStack:
    """`header_union_stacks`: a stack whose elements are header unions."""

    name: str
    type_name: str
    elements: tuple[str, ...]  # union names


@dataclass(frozen=True, slots=True)
class ActionParam:
    name: str
    width: int


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    id: int
    params: tuple[ActionParam, ...]
    primitives: tuple[Json, ...]


@dataclass(frozen=True, slots=True)
class KeyField:
    match_type: str
    target: tuple[str, str] | str  # (header, field), or a header name for `valid`
    mask: int | None
    name: str
    width: int


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    action: str
    params: tuple[int, ...]
    action_const: bool
    entry_const: bool


@dataclass(frozen=True, slots=True)
class ConstEntry:
    key: tuple[Json, ...]  # JSON match_key objects, checked and converted by the Device
    action: str
    params: tuple[int, ...]
    priority: int  # BMv2 convention: lower number wins


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    match_type: str
    keys: tuple[KeyField, ...]
    actions: tuple[str, ...]
    action_map: dict[str, Action]  # the action objects this table runs, by name (ids via "action_ids")
    next_tables: dict[str, str | None]
    base_default_next: str | None
    size: int
    with_counters: bool
    default_entry: DefaultEntry | None
    const_entries: tuple[ConstEntry, ...]
    direct_meter: str | None = None  # the meter array executed on every hit (BMv2 "direct_meters")
    action_profile: str | None = None  # tables of type indirect / indirect_ws: entries point at members/groups

    @property
    def hit_miss_next(self) -> bool:
        return "__HIT__" in self.next_tables or "__MISS__" in self.next_tables


@dataclass(frozen=True, slots=True)
class Conditional:
    name: str
    expression: Json
    true_next: str | None
    false_next: str | None


@dataclass(frozen=True, slots=True)
class ActionCall:
    name: str
    action: str
    next_node: str | None


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    init_table: str | None
    tables: dict[str, Table]
    conditionals: dict[str, Conditional]
    action_calls: dict[str, ActionCall]


@dataclass(frozen=True, slots=True)
class ParseState:
    name: str
    ops: tuple[Json, ...]
    transition_key: tuple[Json, ...]
    transitions: tuple[Json, ...]


@dataclass(frozen=True, slots=True)
class Parser:
    name: str
    init_state: str | None
    states: dict[str, ParseState]


@dataclass(frozen=True, slots=True)
class Deparser:
    name: str
    order: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Calculation:
    name: str
    algo: str
    inputs: tuple[Json, ...]


@dataclass(frozen=True, slots=True)
class Checksum:
    name: str
    target: tuple[str, str]
    calculation: str
    verify: bool
    update: bool
    if_cond: Json | None


@dataclass(frozen=True, slots=True)
class RegisterArray:
    name: str
    size: int
    width: int


@dataclass(frozen=True, slots=True)
class CounterArray:
    name: str
    size: int
    is_direct: bool
    binding: str | None


@dataclass(frozen=True, slots=True)
class ValueSet:
    """A parser value set: members the control plane writes, matched by `select` cases of type parse_vset."""

    name: str
    id: int
    compressed_bitwidth: int
    max_size: int
    # Widths of the select key fields it is matched against (BMv2 pads each to whole bytes); their sum is the
    # compressed bitwidth. One field of that width for a value set no select uses.
    widths: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ActionProfile:
    """An action profile, or an action selector when it has a `selector` (the hash over the tables' selector
    keys, as a calculation named '<profile>$selector')."""

    name: str
    size: int
    selector: Calculation | None
    tables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LearnList:
    """The fields a digest (generate_digest / digest<T>) sends, read at the end of ingress (BMv2 learn_lists)."""

    id: int
    name: str
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MeterArray:
    """A two-rate three-color meter array (BMv2 meter_arrays). A direct meter has a cell per entry of the table it
    is bound to, executed when the table hits, its color written to `result_target`."""

    name: str
    size: int
    unit: str  # "packets" | "bytes"
    is_direct: bool
    binding: str | None
    result_target: tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class FieldList:
    id: int
    name: str
    fields: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Program:
    """Everything the code generators and the Device need from one BMv2 JSON."""

    header_types: dict[str, HeaderType]
    headers: dict[str, Header]
    errors: dict[str, int]
    actions_by_id: dict[int, Action]
    actions: dict[str, Action]
    parser: Parser
    deparser: Deparser
    ingress: Pipeline
    egress: Pipeline
    calculations: dict[str, Calculation]
    checksums: tuple[Checksum, ...]
    registers: dict[str, RegisterArray]
    counters: dict[str, CounterArray]
    field_lists: dict[int, FieldList]
    field_aliases: dict[str, tuple[str, str]]
    tables: dict[str, Table] = field(default_factory=dict)
    value_sets: dict[str, ValueSet] = field(default_factory=dict)
    meters: dict[str, MeterArray] = field(default_factory=dict)
    action_profiles: dict[str, ActionProfile] = field(default_factory=dict)
    learn_lists: dict[int, LearnList] = field(default_factory=dict)
    stacks: dict[str, HeaderStack] = field(default_factory=dict)
    unions: dict[str, HeaderUnion] = field(default_factory=dict)
    union_stacks: dict[str, UnionStack] = field(default_factory=dict)
    # header -> (union, index of the member); union -> (union stack, index of the element)
    union_of: dict[str, tuple[str, int]] = field(default_factory=dict)
    union_stack_of: dict[str, tuple[str, int]] = field(default_factory=dict)

    def union_member(self, union: str, member: str) -> int:
        """The index of `member` in `union`'s type (InvalidArgument when it has none of that name)."""
        for i, (name, _) in enumerate(self.unions[union].members):
            if name == member:
                return i
        raise InvalidArgument(f"header union '{union}' has no member '{member}'")

    def field_spec(self, header: str, name: str) -> FieldSpec:
        hdr = self.headers.get(header)
        if hdr is None:
            raise InvalidArgument(f"field reference to unknown header '{header}'")
        if name == "$valid$":
            return FieldSpec("$valid$", 1, False)
        for spec in hdr.type.fields:
            if spec.name == name:
                return spec
        raise InvalidArgument(f"header '{header}' has no field '{name}'")

    def resolve_alias(self, dotted: str) -> tuple[str, str] | None:
        """`standard_metadata.x` or an alias such as `intrinsic_metadata.mcast_grp`, if the program has it."""
        if dotted in self.field_aliases:
            return self.field_aliases[dotted]
        header, _, name = dotted.partition(".")
        hdr = self.headers.get(header)
        if hdr is not None and any(f.name == name for f in hdr.type.fields):
            return (header, name)
        return None


def parse_hexstr(text: str) -> int:
    """BMv2 hexstr: big-endian hex, optionally negative."""
    if not isinstance(text, str):
        raise InvalidArgument(f"expected a hex string, got {text!r}")
    negative = text.startswith("-")
    body = text[1:] if negative else text
    try:
        value = int(body, 16)
    except ValueError:
        raise InvalidArgument(f"bad hex string {text!r}") from None
    return -value if negative else value


def _req(obj: Json, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise InvalidArgument(f"BMv2 JSON: {where} lacks '{key}'")
    return obj[key]


def decode_json(source: bytes | str | dict) -> Json:
    if isinstance(source, dict):
        return source
    try:
        root = json.loads(source)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"pipeline config is not JSON: {exc}") from None
    if not isinstance(root, dict):
        raise InvalidArgument("pipeline config is not a BMv2 JSON object")
    return root


def load_program(source: bytes | str | dict) -> Program:
    """Validate a BMv2 JSON (v1model) and model it; raise InvalidArgument naming what is wrong or unsupported."""
    root = decode_json(source)
    meta = root.get("__meta__")
    if not isinstance(meta, dict) or "version" not in meta:
        raise InvalidArgument("not a BMv2 JSON: no __meta__.version (is this the output of p4c-bm2-ss?)")
    version = meta["version"]
    if not (isinstance(version, list) and len(version) == 2 and version[0] == 2):
        raise InvalidArgument(f"unsupported BMv2 JSON format version {version!r} (need 2.x)")
    for key in ("header_types", "headers", "parsers", "deparsers", "actions", "pipelines"):
        if not isinstance(root.get(key), list):
            raise InvalidArgument(f"not a BMv2 JSON: '{key}' is missing or not a list")
    for key, what in _UNSUPPORTED_IF_NONEMPTY.items():
        if root.get(key):
            names = ", ".join(str(item.get("name", "?")) for item in root[key] if isinstance(item, dict))
            raise UnsupportedProgram(f"{what} are not supported by the softswitch ({key}: {names})")

    header_types = {}
    for ht in root["header_types"]:
        name = _req(ht, "name", "header type")
        fields = []
        varbit = None
        for f in _req(ht, "fields", f"header type {name}"):
            if not isinstance(f, list) or len(f) < 2:
                raise InvalidArgument(f"header type {name}: bad field {f!r}")
            if f[1] == "*":
                if varbit is not None:
                    raise InvalidArgument(f"header type {name}: more than one variable-length field")
                varbit = f[0]
                fields.append(FieldSpec(f[0], 0, False, varbit=True))
                continue
            if not isinstance(f[1], int) or f[1] <= 0:
                raise InvalidArgument(f"header type {name}: bad width for field {f[0]!r}")
            fields.append(FieldSpec(f[0], f[1], bool(f[2]) if len(f) > 2 else False))
        if varbit is not None:
            # BMv2: max_length is the header's largest size in bytes, its fixed fields included.
            max_length = ht.get("max_length")
            fixed = sum(f.width for f in fields)
            if not isinstance(max_length, int) or max_length * 8 <= fixed:
                raise InvalidArgument(f"header type {name}: variable-length field '{varbit}' without a usable "
                                      f"max_length ({max_length!r})")
            fields = [FieldSpec(f.name, max_length * 8 - fixed, False, True) if f.varbit else f for f in fields]
        header_types[name] = HeaderType(name, tuple(fields))

    headers = {}
    for h in root["headers"]:
        name = _req(h, "name", "header")
        type_name = _req(h, "header_type", f"header {name}")
        if type_name not in header_types:
            raise InvalidArgument(f"header {name}: unknown header type '{type_name}'")
        headers[name] = Header(name, header_types[type_name], bool(h.get("metadata", False)))
        if not headers[name].metadata and header_types[type_name].bit_width % 8:
            raise InvalidArgument(f"header {name}: width {header_types[type_name].bit_width} is not a whole byte count")
    stacks, unions, union_stacks, union_of, union_stack_of = _load_stacks_and_unions(root, header_types, headers)

    errors = {name: i for i, name in enumerate(CORE_ERRORS)}
    if root.get("errors"):
        errors = {}
        for item in root["errors"]:
            errors[item[0]] = int(item[1])
        next_free = max(errors.values(), default=-1) + 1
        for name in CORE_ERRORS:
            if name not in errors:
                errors[name] = next_free
                next_free += 1

    actions_by_id = {}
    actions = {}
    for a in root["actions"]:
        name = _req(a, "name", "action")
        params = tuple(ActionParam(p["name"], int(p["bitwidth"])) for p in a.get("runtime_data", []))
        action = Action(name, int(_req(a, "id", f"action {name}")), params, tuple(a.get("primitives", [])))
        actions_by_id[action.id] = action
        # Several actions may share a name (p4c copies an action per use site); tables name actions by name.
        actions.setdefault(name, action)

    parsers = root["parsers"]
    if len(parsers) != 1:
        raise UnsupportedProgram(f"expected exactly one parser (v1model), found {len(parsers)}")
    parser = _load_parser(parsers[0])

    deparsers = root["deparsers"]
    if len(deparsers) != 1:
        raise UnsupportedProgram(f"expected exactly one deparser (v1model), found {len(deparsers)}")
    dp = deparsers[0]
    if dp.get("primitives"):
        raise UnsupportedProgram(f"deparser '{dp.get('name')}' calls primitives, which are not supported")
    for name in dp.get("order", []):
        if name not in headers:
            raise InvalidArgument(f"deparser emits unknown header '{name}'")
    deparser = Deparser(dp.get("name", "deparser"), tuple(dp.get("order", [])))

    pipelines = {}
    action_profiles: dict[str, ActionProfile] = {}
    for p in root["pipelines"]:
        pipelines[p["name"]] = _load_pipeline(p, actions_by_id, headers)
        action_profiles.update(_load_action_profiles(p, pipelines[p["name"]]))
    if set(pipelines) != {"ingress", "egress"}:
        raise UnsupportedProgram(f"expected pipelines 'ingress' and 'egress' (v1model), found {sorted(pipelines)}")
    tables = {}
    for p in pipelines.values():
        tables.update(p.tables)

    calculations = {}
    for c in root.get("calculations", []):
        calculations[c["name"]] = Calculation(c["name"], c.get("algo", ""), tuple(c.get("input", [])))
    for profile in action_profiles.values():
        if profile.selector is not None:
            calculations[profile.selector.name] = profile.selector

    checksums = []
    for c in root.get("checksums", []):
        if c.get("type", "generic") != "generic":
            raise UnsupportedProgram(f"checksum '{c.get('name')}' of type '{c.get('type')}' is not supported")
        if c.get("calculation") not in calculations:
            raise InvalidArgument(f"checksum '{c.get('name')}' uses unknown calculation '{c.get('calculation')}'")
        target = tuple(c["target"])
        checksums.append(
            Checksum(
                c["name"],
                (target[0], target[1]),
                c["calculation"],
                bool(c.get("verify", True)),
                bool(c.get("update", True)),
                c.get("if_cond"),
            )
        )

    registers = {}
    for r in root.get("register_arrays", []):
        size, width = int(r["size"]), int(r["bitwidth"])
        if size <= 0 or width <= 0:
            raise InvalidArgument(f"register '{r['name']}' has size {size} and width {width}")
        registers[r["name"]] = RegisterArray(r["name"], size, width)

    counters = {}
    for c in root.get("counter_arrays", []):
        counters[c["name"]] = CounterArray(
            c["name"], int(c.get("size", 0)), bool(c.get("is_direct", False)), c.get("binding")
        )

    field_lists = {}
    for fl in root.get("field_lists", []):
        elements = []
        for element in fl.get("elements", []):
            if element.get("type") != "field":
                raise UnsupportedProgram(f"field list '{fl.get('name')}' holds a {element.get('type')}")
            elements.append((element["value"][0], element["value"][1]))
        field_lists[int(fl["id"])] = FieldList(int(fl["id"]), fl.get("name", ""), tuple(elements))

    aliases = {}
    for alias in root.get("field_aliases", []):
        aliases[alias[0]] = (alias[1][0], alias[1][1])

    program = Program(
        header_types=header_types,
        headers=headers,
        errors=errors,
        actions_by_id=actions_by_id,
        actions=actions,
        parser=parser,
        deparser=deparser,
        ingress=pipelines["ingress"],
        egress=pipelines["egress"],
        calculations=calculations,
        checksums=tuple(checksums),
        registers=registers,
        counters=counters,
        field_lists=field_lists,
        field_aliases=aliases,
        tables=tables,
        stacks=stacks,
        unions=unions,
        union_stacks=union_stacks,
        union_of=union_of,
        union_stack_of=union_stack_of,
        value_sets=_load_value_sets(root.get("parse_vsets") or [], parser, headers),
        meters=_load_meters(root.get("meter_arrays") or []),
        action_profiles=action_profiles,
        learn_lists=_load_learn_lists(root.get("learn_lists") or [], headers),
    )
    if program.resolve_alias("standard_metadata.egress_spec") is None:
        raise UnsupportedProgram("no standard_metadata.egress_spec: this does not look like a v1model program")
    for c in counters.values():
        if c.is_direct and c.binding not in tables:
            raise InvalidArgument(f"direct counter '{c.name}' is bound to unknown table '{c.binding}'")
    _check_direct_meters(program)
    return program


def _header_names_by_id(root: Json) -> dict[int, str]:
    names = {}
    for position, h in enumerate(root["headers"]):
        names[int(h.get("id", position))] = h["name"]
    return names


def _load_stacks_and_unions(root: Json, header_types: dict[str, HeaderType], headers: dict[str, Header]):
    """header_stacks, header_union_types, header_unions and header_union_stacks, checked for consistency."""
    by_id = _header_names_by_id(root)

    def header_named(hid: Any, where: str) -> str:
        if hid not in by_id:
            raise InvalidArgument(f"{where} names unknown header id {hid!r}")
        return by_id[hid]

    stacks = {}
    for st in root.get("header_stacks") or []:
        name = _req(st, "name", "header stack")
        htype = header_types.get(st.get("header_type"))
        if htype is None:
            raise InvalidArgument(f"header stack {name}: unknown header type {st.get('header_type')!r}")
        elements = tuple(header_named(hid, f"header stack {name}") for hid in st.get("header_ids", []))
        if not elements or any(headers[e].type is not htype or headers[e].metadata for e in elements):
            raise InvalidArgument(f"header stack {name}: its elements must be headers of type {htype.name}")
        stacks[name] = HeaderStack(name, htype, elements)
    union_types = {}
    for ut in root.get("header_union_types") or []:
        union_types[_req(ut, "name", "header union type")] = tuple((m[0], m[1]) for m in ut.get("headers", []))
    unions, union_of = {}, {}
    for un in root.get("header_unions") or []:
        name = _req(un, "name", "header union")
        members_t = union_types.get(un.get("union_type"))
        if members_t is None:
            raise InvalidArgument(f"header union {name}: unknown union type {un.get('union_type')!r}")
        instances = [header_named(hid, f"header union {name}") for hid in un.get("header_ids", [])]
        if len(instances) != len(members_t):
            raise InvalidArgument(f"header union {name}: {len(instances)} headers for {len(members_t)} members")
        for (member, type_name), header in zip(members_t, instances):
            if headers[header].type.name != type_name or headers[header].metadata:
                raise InvalidArgument(f"header union {name}: member {member} is not a header of type {type_name}")
            if header in union_of:
                raise InvalidArgument(f"header {header} is a member of two unions")
        unions[name] = HeaderUnion(name, un["union_type"], tuple((m, h) for (m, _), h in zip(members_t, instances)))
        for i, header in enumerate(instances):
            union_of[header] = (name, i)
    union_stacks, union_stack_of = {}, {}
    by_uid = {int(u.get("id", i)): u["name"] for i, u in enumerate(root.get("header_unions") or [])}
    for us in root.get("header_union_stacks") or []:
        name = _req(us, "name", "header union stack")
        elements = []
        for uid in us.get("header_union_ids", []):
            if uid not in by_uid:
                raise InvalidArgument(f"header union stack {name} names unknown union id {uid!r}")
            elements.append(by_uid[uid])
        if not elements or any(unions[e].type_name != us.get("union_type") for e in elements):
            raise InvalidArgument(f"header union stack {name}: its elements must be unions of type "
                                  f"{us.get('union_type')!r}")
        union_stacks[name] = UnionStack(name, us["union_type"], tuple(elements))
        for i, element in enumerate(elements):
            union_stack_of[element] = (name, i)
    return stacks, unions, union_stacks, union_of, union_stack_of


def _load_action_profiles(p: Json, pipeline: Pipeline) -> dict[str, ActionProfile]:
    profiles: dict[str, ActionProfile] = {}
    for item in p.get("action_profiles") or []:
        name = _req(item, "name", "action profile")
        size = int(item.get("max_size", 0))
        if size < 0:
            raise InvalidArgument(f"action profile '{name}' has size {size}")
        selector = None
        if item.get("selector") is not None:
            sel = item["selector"]
            selector = Calculation(f"{name}$selector", sel.get("algo", ""), tuple(sel.get("input", [])))
        tables = tuple(t.name for t in pipeline.tables.values() if t.action_profile == name)
        profiles[name] = ActionProfile(name, size, selector, tables)
    implementations = {t.get("name"): t.get("type", "simple") for t in p.get("tables", [])}
    for table in pipeline.tables.values():
        if table.action_profile is None:
            continue
        profile = profiles.get(table.action_profile)
        if profile is None:
            raise InvalidArgument(f"table '{table.name}' uses unknown action profile '{table.action_profile}'")
        if implementations.get(table.name) == "indirect_ws" and profile.selector is None:
            raise InvalidArgument(f"table '{table.name}' needs a selector, but action profile '{profile.name}' "
                                  "has none")
        first = pipeline.tables[profile.tables[0]]
        if set(table.actions) != set(first.actions):
            raise UnsupportedProgram(f"tables '{first.name}' and '{table.name}' share action profile "
                                     f"'{profile.name}' but not their actions")
    return profiles


def _load_learn_lists(items: list[Json], headers: dict[str, Header]) -> dict[int, LearnList]:
    lists = {}
    for item in items:
        name = _req(item, "name", "learn list")
        list_id = int(_req(item, "id", f"learn list {name}"))
        if list_id <= 0:
            raise InvalidArgument(f"learn list '{name}' has id {list_id} (BMv2 takes 0 for no digest)")
        fields = []
        for element in item.get("elements", []):
            if element.get("type") != "field":
                raise UnsupportedProgram(f"learn list '{name}' holds a {element.get('type')!r} (only fields)")
            header, fname = element["value"]
            if header not in headers or not any(f.name == fname for f in headers[header].type.fields):
                raise InvalidArgument(f"learn list '{name}' names unknown field '{header}.{fname}'")
            fields.append((header, fname))
        lists[list_id] = LearnList(list_id, name, tuple(fields))
    return lists


def _load_meters(items: list[Json]) -> dict[str, MeterArray]:
    meters = {}
    for m in items:
        name = _req(m, "name", "meter array")
        unit = m.get("type")
        if unit not in ("packets", "bytes"):
            raise InvalidArgument(f"meter '{name}' has type {unit!r} (need 'packets' or 'bytes')")
        if int(m.get("rate_count", 2)) != 2:
            raise UnsupportedProgram(f"meter '{name}' has {m.get('rate_count')} rates (only two-rate meters)")
        size = int(m.get("size", 0))
        if size < 0:
            raise InvalidArgument(f"meter '{name}' has size {size}")
        target = m.get("result_target")
        meters[name] = MeterArray(name, size, unit, bool(m.get("is_direct", False)), m.get("binding"),
                                  (target[0], target[1]) if target else None)
    return meters


def _check_direct_meters(program: Program) -> None:
    for meter in program.meters.values():
        if not meter.is_direct:
            continue
        table = program.tables.get(meter.binding or "")
        if table is None:
            raise InvalidArgument(f"direct meter '{meter.name}' is bound to unknown table {meter.binding!r}")
        if table.direct_meter != meter.name:
            raise InvalidArgument(f"direct meter '{meter.name}' is bound to table '{table.name}', which names "
                                  f"{table.direct_meter!r} as its direct meter")
        if meter.result_target is None:
            raise InvalidArgument(f"direct meter '{meter.name}' has no result_target")
        program.field_spec(*meter.result_target)   # InvalidArgument for an unknown field
    for table in program.tables.values():
        if table.direct_meter is not None and table.direct_meter not in program.meters:
            raise InvalidArgument(f"table '{table.name}' names unknown direct meter '{table.direct_meter}'")


def _key_width(table: str, match_type: str, target: tuple[str, str] | str, headers: dict[str, Header]) -> int:
    if match_type == "valid" or isinstance(target, str):
        if (target if isinstance(target, str) else target[0]) not in headers:
            raise InvalidArgument(f"table '{table}' matches on unknown header {target!r}")
        return 1
    hdr = headers.get(target[0])
    if hdr is None:
        raise InvalidArgument(f"table '{table}' matches on unknown header '{target[0]}'")
    if target[1] == "$valid$":
        return 1
    for f in hdr.type.fields:
        if f.name == target[1]:
            return f.width
    raise InvalidArgument(f"table '{table}' matches on unknown field '{target[0]}.{target[1]}'")


def _load_parser(p: Json) -> Parser:
    states = {}
    for s in p.get("parse_states", []):
        transitions = []
        for t in s.get("transitions", []):
            t = dict(t)
            # Older p4c omits "type" and writes the default case as value "default" (BMv2 accepts both).
            if "type" not in t:
                t["type"] = "default" if t.get("value") == "default" else "hexstr"
            transitions.append(t)
        states[s["name"]] = ParseState(
            s["name"], tuple(s.get("parser_ops", [])), tuple(s.get("transition_key", [])), tuple(transitions)
        )
    init = p.get("init_state")
    if init is not None and init not in states:
        raise InvalidArgument(f"parser init_state '{init}' is not a parse state")
    for state in states.values():
        for t in state.transitions:
            nxt = t.get("next_state")
            if nxt is not None and nxt not in states:
                raise InvalidArgument(f"parse state '{state.name}' goes to unknown state '{nxt}'")
    return Parser(p.get("name", "parser"), init, states)


def _select_key_width(key: Json, headers: dict[str, Header]) -> int | None:
    """The width of one element of a select key, where it is a field or a lookahead; None otherwise."""
    if key.get("type") == "lookahead":
        return int(key["value"][1])
    if key.get("type") == "field":
        header = headers.get(key["value"][0])
        for spec in header.type.fields if header is not None else ():
            if spec.name == key["value"][1]:
                return spec.width
    return None


def _load_value_sets(items: list[Json], parser: Parser, headers: dict[str, Header]) -> dict[str, ValueSet]:
    declared: dict[str, Json] = {}
    for item in items:
        name = _req(item, "name", "parse_vset")
        width, size = int(_req(item, "compressed_bitwidth", f"value set {name}")), int(item.get("max_size", 0))
        if width <= 0 or size < 0:
            raise InvalidArgument(f"value set '{name}' has compressed bitwidth {width} and size {size}")
        declared[name] = item
    widths: dict[str, tuple[int, ...]] = {}
    for state in parser.states.values():
        for t in state.transitions:
            if t.get("type") != "parse_vset":
                continue
            name = t.get("value")
            if name not in declared:
                raise InvalidArgument(f"parse state '{state.name}' selects on unknown value set {name!r}")
            key = tuple(_select_key_width(k, headers) for k in state.transition_key)
            if not key or None in key:
                raise UnsupportedProgram(f"parse state '{state.name}': value set '{name}' is matched against a "
                                         "select key that is not made of fields and lookaheads")
            if sum(key) != int(declared[name]["compressed_bitwidth"]):
                raise InvalidArgument(f"value set '{name}' is {declared[name]['compressed_bitwidth']} bits wide but "
                                      f"parse state '{state.name}' matches it against {sum(key)} bits")
            if widths.setdefault(name, key) != key:
                raise UnsupportedProgram(f"value set '{name}' is matched against select keys of different shapes "
                                         f"({list(widths[name])} and {list(key)})")
    return {name: ValueSet(name, int(item.get("id", 0)), int(item["compressed_bitwidth"]), int(item.get("max_size", 0)),
                           widths.get(name, (int(item["compressed_bitwidth"]),)))
            for name, item in declared.items()}


def _load_pipeline(p: Json, actions_by_id: dict[int, Action], headers: dict[str, Header]) -> Pipeline:
    name = p["name"]
    tables = {}
    for t in p.get("tables", []):
        tname = t["name"]
        implementation = t.get("type", "simple")
        if implementation not in ("simple", "indirect", "indirect_ws"):
            raise UnsupportedProgram(f"table '{tname}' has implementation '{implementation}'")
        if implementation != "simple" and t.get("default_entry") is not None:
            raise UnsupportedProgram(f"table '{tname}' uses an action profile and has a default entry, which "
                                     "the softswitch does not implement (p4c does not emit one)")
        if t.get("support_timeout"):
            raise UnsupportedProgram(f"table '{tname}' supports idle timeout, which is not supported")
        keys = []
        for k in t.get("key", []):
            mt = k["match_type"]
            if mt not in ("exact", "lpm", "ternary", "range", "valid", "optional"):
                raise UnsupportedProgram(f"table '{tname}': match type '{mt}' is not supported")
            target = k["target"]
            tgt = target if isinstance(target, str) else (target[0], target[1])
            mask = parse_hexstr(k["mask"]) if k.get("mask") is not None else None
            default_name = tgt if isinstance(tgt, str) else f"{tgt[0]}.{tgt[1]}"
            keys.append(KeyField(mt, tgt, mask, k.get("name") or default_name, _key_width(tname, mt, tgt, headers)))
        if sum(1 for k in keys if k.match_type == "lpm") > 1:
            raise InvalidArgument(f"table '{tname}' has more than one lpm key field")
        action_map: dict[str, Action] = {}
        for aid in t.get("action_ids", []):
            if aid not in actions_by_id:
                raise InvalidArgument(f"table '{tname}' names unknown action id {aid}")
            action_map[actions_by_id[aid].name] = actions_by_id[aid]
        for a in t.get("actions", []):
            if a not in action_map:
                found = [act for act in actions_by_id.values() if act.name == a]
                if not found:
                    raise InvalidArgument(f"table '{tname}' names unknown action '{a}'")
                action_map[a] = found[0]
        action_names = list(action_map)
        default_entry = None
        de = t.get("default_entry")
        if de is not None:
            action = actions_by_id.get(int(de["action_id"]))
            if action is None:
                raise InvalidArgument(f"table '{tname}': default action id {de['action_id']} is unknown")
            default_entry = DefaultEntry(
                action.name,
                tuple(parse_hexstr(v) for v in de.get("action_data", [])),
                bool(de.get("action_const", False)),
                bool(de.get("action_entry_const", False)),
            )
        const_entries = []
        for e in t.get("entries", []) or []:
            ae = e["action_entry"]
            action = actions_by_id.get(int(ae["action_id"]))
            if action is None:
                raise InvalidArgument(f"table '{tname}': const entry names unknown action id {ae['action_id']}")
            const_entries.append(
                ConstEntry(
                    tuple(e["match_key"]),
                    action.name,
                    tuple(parse_hexstr(v) for v in ae.get("action_data", [])),
                    int(e.get("priority", 0)),
                )
            )
        tables[tname] = Table(
            name=tname,
            match_type=t.get("match_type", "exact"),
            keys=tuple(keys),
            actions=tuple(action_names),
            action_map=action_map,
            next_tables=dict(t.get("next_tables", {})),
            base_default_next=t.get("base_default_next"),
            size=int(t.get("max_size", 1024)),
            with_counters=bool(t.get("with_counters", False)),
            default_entry=default_entry,
            const_entries=tuple(const_entries),
            direct_meter=t.get("direct_meters") or None,
            action_profile=t.get("action_profile") if implementation != "simple" else None,
        )
    conditionals = {}
    for c in p.get("conditionals", []):
        conditionals[c["name"]] = Conditional(c["name"], c["expression"], c.get("true_next"), c.get("false_next"))
    action_calls = {}
    for c in p.get("action_calls", []):
        action = actions_by_id.get(int(c["action_id"]))
        if action is None:
            raise InvalidArgument(f"action call '{c['name']}' names unknown action id {c['action_id']}")
        action_calls[c["name"]] = ActionCall(c["name"], action.name, c.get("next_node"))
    nodes = set(tables) | set(conditionals) | set(action_calls)
    init = p.get("init_table")
    if init is not None and init not in nodes:
        raise InvalidArgument(f"pipeline {name}: init_table '{init}' is not a node")
    for t in tables.values():
        for nxt in list(t.next_tables.values()) + [t.base_default_next]:
            if nxt is not None and nxt not in nodes:
                raise InvalidArgument(f"table '{t.name}' continues at unknown node '{nxt}'")
    for c in conditionals.values():
        for nxt in (c.true_next, c.false_next):
            if nxt is not None and nxt not in nodes:
                raise InvalidArgument(f"conditional '{c.name}' continues at unknown node '{nxt}'")
    return Pipeline(name, init, tables, conditionals, action_calls)
