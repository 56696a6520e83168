"""Typed argument converters shared by the omnireduce command lines (argparse's `type=`).

Each converter takes the text of one argument and returns its value, or raises `argparse.ArgumentTypeError`,
which argparse reports as `PROG: error: argument --flag: MESSAGE` with exit status 2. A message quotes what
was given and says what was expected, so the user can fix the argument without reading the code.

    parser.add_argument("--workers", type=integer(minimum=1))
    parser.add_argument("--timeout", type=seconds)
    parser.add_argument("--switch", type=host_port(default_port=20306, ipv4=True))

This module depends on nothing of the project, so every subpackage (the softswitch included, which must stay
importable without the controller and the host) can use it.
"""

from __future__ import annotations

import argparse
import enum
import math
from ipaddress import IPv4Address
from pathlib import Path
from typing import Callable, NamedTuple, TypeVar

__all__ = ["Address", "choice", "existing_file", "fraction", "from_parser", "host_port", "integer", "number",
           "seconds"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.Enum)

_HIGHEST_PORT = 0xFFFF


def _named(convert: Callable[[str], _T], name: str) -> Callable[[str], _T]:
    # argparse names the converter in some messages (`invalid NAME value`); give it a word, not `convert`.
    convert.__name__ = convert.__qualname__ = name
    return convert


def _integer_range(minimum: int | None, maximum: int | None) -> str:
    """`is negative`-style words for the ways an integer can miss its bounds (see `integer`)."""
    if minimum is not None and maximum is not None:
        return f"is not in {minimum}..{maximum}"
    if minimum == 0:
        return "is negative"
    if minimum == 1:
        return "is not a positive integer"
    if minimum is not None:
        return f"is less than {minimum}"
    return f"is more than {maximum}"


def integer(minimum: int | None = None, maximum: int | None = None, *, base: int = 10) -> Callable[[str], int]:
    """An integer in minimum..maximum (either bound may be left open).

    `base=0` also accepts Python's prefixed literals (0x1f, 0o17, 0b101); a leading zero is then refused, as
    `010` would be ambiguous.
    """
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ValueError(f"empty range {minimum}..{maximum}")

    def convert(text: str) -> int:
        try:
            value = int(text, base)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value} {_integer_range(minimum, maximum)}")
        return value

    return _named(convert, "integer")


def _number_range(minimum: float | None, maximum: float | None, allow_minimum: bool, what: str) -> str:
    """Words for the ways a number can miss its bounds (see `number`)."""
    if minimum is not None and maximum is not None:
        return f"is not a {what} in {'[' if allow_minimum else '('}{minimum:g}, {maximum:g}]"
    if minimum == 0:
        return "is negative" if allow_minimum else f"is not a positive {what}"
    if minimum is not None:
        return f"is less than {minimum:g}" if allow_minimum else f"is not greater than {minimum:g}"
    return f"is more than {maximum:g}"


def number(minimum: float | None = None, maximum: float | None = None, *, allow_minimum: bool = True,
           what: str = "number") -> Callable[[str], float]:
    """A finite number (NaN and infinities are refused) in [minimum, maximum], or (minimum, maximum] with
    `allow_minimum=False`; either bound may be left open. `what` names the quantity in messages
    ("'x' is not a number of seconds")."""
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ValueError(f"empty range [{minimum}, {maximum}]")

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        if math.isnan(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}")
        too_low = minimum is not None and (value < minimum or (value == minimum and not allow_minimum))
        if too_low or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{text} {_number_range(minimum, maximum, allow_minimum, what)}")
        if math.isinf(value):  # within the bounds, so one of them is open
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite {what}")
        return value

    return _named(convert, what.replace(" ", "_"))


seconds = _named(number(minimum=0.0, allow_minimum=False, what="number of seconds"), "seconds")
"""A positive, finite duration in seconds."""

fraction = _named(number(minimum=0.0, maximum=1.0, what="fraction"), "fraction")
"""A number in [0, 1]."""


def existing_file(text: str) -> Path:
    """The path of a file that exists (checked now, so a typo fails before anything starts)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {text}" if path.exists() else f"no such file: {text}")
    return path


class Address(NamedTuple):
    """A host and a port: a (host, port) tuple as sockets take it, written HOST:PORT."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def host_port(default_port: int | None = None, *, ipv4: bool = False, allow_port_zero: bool = True,
              example: str | None = None) -> Callable[[str], Address]:
    """HOST:PORT (or HOST alone, meaning `default_port`, where one is given) as an `Address`.

    `ipv4`: HOST must be a dotted-quad IPv4 address rather than any name. `allow_port_zero`: port 0 (which a
    listener reads as "any free port") is accepted. `example` is quoted in messages.
    """
    form = ("IPv4" if ipv4 else "HOST") + (":PORT" if default_port is None else "[:PORT]")
    lowest_port = 0 if allow_port_zero else 1
    hint = f" (e.g. {example})" if example else ""

    def refuse(text: str, why: str) -> argparse.ArgumentTypeError:
        return argparse.ArgumentTypeError(f"{text!r} is not {form}{hint}: {why}")

    def convert(text: str) -> Address:
        host, separator, port_text = text.rpartition(":")
        if not separator:
            if default_port is None:
                raise refuse(text, "no port")
            host, port_text = text, str(default_port)
        if not host:
            raise refuse(text, "no host")
        if ipv4:
            try:
                IPv4Address(host)
            except ValueError:
                raise refuse(text, f"{host!r} is not an IPv4 address") from None
        if not (port_text.isascii() and port_text.isdigit()):
            raise refuse(text, f"port {port_text!r} is not a number")
        port = int(port_text)
        if not lowest_port <= port <= _HIGHEST_PORT:
            raise refuse(text, f"port {port} is not in {lowest_port}..{_HIGHEST_PORT}")
        return Address(host, port)

    return _named(convert, "address")


def from_parser(parse: Callable[[str], _T], *errors: type[Exception]) -> Callable[[str], _T]:
    """Use a domain parser (`Worker.parse`, `parse_mac`, ...) as a converter: the errors it raises on bad
    text (ValueError unless others are named) become usage errors carrying its message."""
    expected = errors or (ValueError,)

    def convert(text: str) -> _T:
        try:
            return parse(text)
        except expected as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return _named(convert, getattr(parse, "__name__", "value"))


def choice(kind: type[_E]) -> Callable[[str], _E]:
    """A member of the enum `kind` by its value: `'maybe' is not one of auto, on, off` otherwise."""
    values = ", ".join(str(member.value) for member in kind)

    def convert(text: str) -> _E:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not one of {values}") from None

    return _named(convert, kind.__name__)
