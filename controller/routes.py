"""Plain IPv4 forwarding: the `ipv4_routes` entries that carry non-aggregation traffic between the hosts."""

from __future__ import annotations

import ipaddress
import logging

from omnireduce.controller import program
from omnireduce.controller.entities import ActionCall, Lpm, TableEntry
from omnireduce.controller.errors import BadInputError
from omnireduce.controller.model import Route, route_problems
from omnireduce.controller.switch import Switch

log = logging.getLogger(__name__)


def route_entry(route: Route) -> TableEntry:
    return TableEntry(program.IPV4_ROUTES_TABLE,
                      {program.IPV4_ROUTES_KEY_DST_ADDR: Lpm(int(route.prefix.network_address), route.prefix.prefixlen)},
                      ActionCall(program.ROUTE, {program.ROUTE_PORT: route.port, program.ROUTE_SRC_MAC: route.src_mac,
                                                 program.ROUTE_DST_MAC: route.dst_mac}))


def _route_key(prefix: ipaddress.IPv4Network) -> TableEntry:
    return TableEntry(program.IPV4_ROUTES_TABLE,
                      {program.IPV4_ROUTES_KEY_DST_ADDR: Lpm(int(prefix.network_address), prefix.prefixlen)})


def read_routes(switch: Switch) -> list[Route]:
    """Every route on the switch, most specific first."""
    routes = []
    for entry in switch.read_table(program.IPV4_ROUTES_TABLE):
        match = entry.match[program.IPV4_ROUTES_KEY_DST_ADDR]
        if not isinstance(match, Lpm) or entry.action is None:
            raise BadInputError(f"unexpected {program.IPV4_ROUTES_TABLE} entry: {entry}")
        params = entry.action.params
        routes.append(Route(ipaddress.IPv4Network((match.value, match.prefix_len)), params[program.ROUTE_PORT],
                            params[program.ROUTE_SRC_MAC], params[program.ROUTE_DST_MAC]))
    return sorted(routes, key=lambda route: (-route.prefix.prefixlen, route.prefix))


def add_routes(switch: Switch, routes: list[Route]) -> None:
    """Install routes; none of them may exist already (all-or-nothing: one Write, rolled back on failure)."""
    problems = [problem for route in routes for problem in route_problems(route)]
    existing = {route.prefix: route for route in read_routes(switch)}
    seen: set[ipaddress.IPv4Network] = set()
    for route in routes:
        if route.prefix in existing:
            problems.append(f"a route to {route.prefix} already exists ({existing[route.prefix]}); remove it first")
        if route.prefix in seen:
            problems.append(f"route to {route.prefix} given twice")
        seen.add(route.prefix)
    if problems:
        raise BadInputError("cannot add routes:\n  " + "\n  ".join(problems))
    entries = [route_entry(route) for route in routes]
    try:
        switch.insert(entries)
    except BaseException:
        switch.delete([_route_key(route.prefix) for route in routes], ignore_missing=True)
        raise
    log.info("[%s] %d route(s) added", switch.name, len(routes))


def remove_route(switch: Switch, prefix: ipaddress.IPv4Network) -> Route:
    existing = {route.prefix: route for route in read_routes(switch)}
    if prefix not in existing:
        known = ", ".join(str(known_prefix) for known_prefix in existing) or "none"
        raise BadInputError(f"no route to {prefix} on switch {switch.name} (routes: {known})")
    switch.delete([_route_key(prefix)])
    log.info("[%s] route to %s removed", switch.name, prefix)
    return existing[prefix]
