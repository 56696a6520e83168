# Run: /work/main/.venv/bin/pytest tests/test_argtypes.py -q
"""omnireduce.argtypes: the argument converters every command line shares, alone and inside argparse."""

from __future__ import annotations

import argparse
import enum
import socket
from pathlib import Path

import pytest

from omnireduce import argtypes
from omnireduce.argtypes import Address


def refused(convert, text: str) -> str:
    """The message a converter gives for text it must refuse."""
    with pytest.raises(argparse.ArgumentTypeError) as error:
        convert(text)
    return str(error.value)


# --- integer ---------------------------------------------------------------------------------------------------


def test_integer_accepts_values_within_its_bounds() -> None:
    count = argtypes.integer(minimum=1, maximum=8)
    assert [count("1"), count("8"), count(" 3 ")] == [1, 8, 3]
    assert argtypes.integer()("-12") == -12


@pytest.mark.parametrize("minimum, maximum, text, message", [
    (None, None, "x", "'x' is not an integer"),
    (None, None, "1.5", "'1.5' is not an integer"),
    (None, None, "", "'' is not an integer"),
    (0, None, "-1", "-1 is negative"),
    (1, None, "0", "0 is not a positive integer"),
    (5, None, "4", "4 is less than 5"),
    (None, 9, "10", "10 is more than 9"),
    (1, 8, "9", "9 is not in 1..8"),
    (1, 8, "0", "0 is not in 1..8"),
])
def test_integer_says_what_is_wrong(minimum: int | None, maximum: int | None, text: str, message: str) -> None:
    assert refused(argtypes.integer(minimum, maximum), text) == message


def test_integer_base_0_takes_prefixed_literals_and_refuses_leading_zeros() -> None:
    prefixed = argtypes.integer(minimum=0, base=0)
    assert [prefixed("0x1f"), prefixed("0b101"), prefixed("0o17"), prefixed("10")] == [31, 5, 15, 10]
    assert refused(prefixed, "010") == "'010' is not an integer"
    assert refused(prefixed, "-0x1") == "-1 is negative"
    # Base 10 (the default) reads a leading zero as decimal and refuses prefixes.
    assert argtypes.integer()("010") == 10
    assert refused(argtypes.integer(), "0x10") == "'0x10' is not an integer"


def test_an_empty_range_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="empty range"):
        argtypes.integer(minimum=3, maximum=2)
    with pytest.raises(ValueError, match="empty range"):
        argtypes.number(minimum=1.0, maximum=0.5)


# --- number, seconds, fraction ---------------------------------------------------------------------------------


def test_number_accepts_finite_values_within_its_bounds() -> None:
    assert argtypes.number()("-2.5e3") == -2500.0
    assert argtypes.number(minimum=1.0)("1") == 1.0
    assert argtypes.number(minimum=0.0, maximum=1.0, allow_minimum=False)("1") == 1.0


@pytest.mark.parametrize("text", ["nan", "NaN", "-nan"])
def test_number_refuses_nan(text: str) -> None:
    # NaN compares false with every bound, so a check written as `value < minimum` alone would let it through.
    assert refused(argtypes.number(minimum=0.0), text) == f"{text!r} is not a number"
    assert refused(argtypes.seconds, text) == f"{text!r} is not a number of seconds"
    assert refused(argtypes.fraction, text) == f"{text!r} is not a fraction"


@pytest.mark.parametrize("text", ["inf", "Infinity", "1e400"])
def test_number_refuses_infinity(text: str) -> None:
    assert refused(argtypes.number(), text) == f"{text!r} is not a finite number"
    assert refused(argtypes.seconds, text) == f"{text!r} is not a finite number of seconds"
    assert refused(argtypes.fraction, text) == f"{text} is not a fraction in [0, 1]"
    assert refused(argtypes.number(), "-" + text) == f"'-{text}' is not a finite number"


@pytest.mark.parametrize("convert, text, message", [
    (argtypes.number(), "x", "'x' is not a number"),
    (argtypes.number(minimum=0.0), "-0.5", "-0.5 is negative"),
    (argtypes.number(minimum=0.0, allow_minimum=False), "0", "0 is not a positive number"),
    (argtypes.number(minimum=1.0), "0.5", "0.5 is less than 1"),
    (argtypes.number(minimum=1.0, allow_minimum=False), "1", "1 is not greater than 1"),
    (argtypes.number(maximum=2.5), "3", "3 is more than 2.5"),
    (argtypes.number(minimum=0.0, maximum=1.0, allow_minimum=False), "0", "0 is not a number in (0, 1]"),
    (argtypes.number(what="ratio"), "x", "'x' is not a ratio"),
])
def test_number_says_what_is_wrong(convert, text: str, message: str) -> None:
    assert refused(convert, text) == message


def test_seconds_are_positive_and_finite() -> None:
    assert argtypes.seconds("0.25") == 0.25
    assert refused(argtypes.seconds, "0") == "0 is not a positive number of seconds"
    assert refused(argtypes.seconds, "-1") == "-1 is not a positive number of seconds"
    assert refused(argtypes.seconds, "soon") == "'soon' is not a number of seconds"


def test_fraction_is_within_0_and_1_inclusive() -> None:
    assert [argtypes.fraction("0"), argtypes.fraction("1"), argtypes.fraction(".5")] == [0.0, 1.0, 0.5]
    assert refused(argtypes.fraction, "1.01") == "1.01 is not a fraction in [0, 1]"
    assert refused(argtypes.fraction, "-0.1") == "-0.1 is not a fraction in [0, 1]"
    assert refused(argtypes.fraction, "half") == "'half' is not a fraction"


# --- existing_file ---------------------------------------------------------------------------------------------


def test_existing_file(tmp_path: Path) -> None:
    present = tmp_path / "present.json"
    present.write_text("{}")
    assert argtypes.existing_file(str(present)) == present
    assert refused(argtypes.existing_file, str(tmp_path / "absent")) == f"no such file: {tmp_path / 'absent'}"
    assert refused(argtypes.existing_file, str(tmp_path)) == f"not a file: {tmp_path}"


# --- host_port -------------------------------------------------------------------------------------------------


def test_host_port_parses_any_host_and_prints_back() -> None:
    address = argtypes.host_port()("localhost:9559")
    assert address == ("localhost", 9559) and address.host == "localhost" and address.port == 9559
    assert str(address) == "localhost:9559"
    assert argtypes.host_port()("127.0.0.1:0") == Address("127.0.0.1", 0)


def test_host_port_default_port_applies_only_when_the_port_is_left_out() -> None:
    endpoint = argtypes.host_port(default_port=20306, ipv4=True)
    assert endpoint("10.0.0.254") == ("10.0.0.254", 20306)
    assert endpoint("10.0.0.254:5000") == ("10.0.0.254", 5000)
    assert refused(endpoint, "10.0.0.254:") == "'10.0.0.254:' is not IPv4[:PORT]: port '' is not a number"


@pytest.mark.parametrize("convert, text, message", [
    (argtypes.host_port(), "localhost", "'localhost' is not HOST:PORT: no port"),
    (argtypes.host_port(), ":9559", "':9559' is not HOST:PORT: no host"),
    (argtypes.host_port(), "h:x", "'h:x' is not HOST:PORT: port 'x' is not a number"),
    (argtypes.host_port(), "h:-1", "'h:-1' is not HOST:PORT: port '-1' is not a number"),
    (argtypes.host_port(), "h:\u00b2", "'h:\u00b2' is not HOST:PORT: port '\u00b2' is not a number"),
    (argtypes.host_port(), "h:65536", "'h:65536' is not HOST:PORT: port 65536 is not in 0..65535"),
    (argtypes.host_port(allow_port_zero=False), "h:0", "'h:0' is not HOST:PORT: port 0 is not in 1..65535"),
    (argtypes.host_port(example="127.0.0.1:9559"), "h", "'h' is not HOST:PORT (e.g. 127.0.0.1:9559): no port"),
    (argtypes.host_port(ipv4=True), "10.0.0.1", "'10.0.0.1' is not IPv4:PORT: no port"),
    (argtypes.host_port(ipv4=True), "host:1", "'host:1' is not IPv4:PORT: 'host' is not an IPv4 address"),
    (argtypes.host_port(ipv4=True), "10.0.0.256:1", "'10.0.0.256:1' is not IPv4:PORT: '10.0.0.256' is not an "
                                                    "IPv4 address"),
    (argtypes.host_port(default_port=1, ipv4=True), "not-an-ip", "'not-an-ip' is not IPv4[:PORT]: 'not-an-ip' is "
                                                                 "not an IPv4 address"),
])
def test_host_port_says_what_is_wrong(convert, text: str, message: str) -> None:
    assert refused(convert, text) == message


def test_an_address_is_what_a_socket_takes() -> None:
    address = argtypes.host_port(ipv4=True)("127.0.0.1:0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        assert sock.getsockname()[0] == "127.0.0.1"


# --- from_parser -----------------------------------------------------------------------------------------------


class _DomainError(Exception):
    pass


def _parse_even(text: str) -> int:
    value = int(text)
    if value % 2:
        raise _DomainError(f"{value} is odd")
    return value


def test_from_parser_turns_the_named_errors_into_usage_errors() -> None:
    even = argtypes.from_parser(_parse_even, _DomainError)
    assert even("4") == 4
    assert refused(even, "3") == "3 is odd"
    # An error it was not told about is not its to reword: argparse reports it as `invalid _parse_even value`.
    with pytest.raises(ValueError):
        even("x")


def test_from_parser_catches_value_error_by_default() -> None:
    def parse_colour(text: str) -> str:
        if text not in ("red", "green"):
            raise ValueError(f"unknown colour {text!r}")
        return text

    assert refused(argtypes.from_parser(parse_colour), "blue") == "unknown colour 'blue'"


# --- choice ----------------------------------------------------------------------------------------------------


class _Speed(enum.Enum):
    SLOW = "slow"
    FAST = "fast"


def test_choice_takes_a_member_by_its_value_and_lists_them_otherwise() -> None:
    speed = argtypes.choice(_Speed)
    assert speed("fast") is _Speed.FAST
    assert refused(speed, "FAST") == "'FAST' is not one of slow, fast"
    assert refused(speed, "") == "'' is not one of slow, fast"


# --- inside argparse -------------------------------------------------------------------------------------------


def test_argparse_reports_a_refusal_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--workers", type=argtypes.integer(minimum=1))
    parser.add_argument("--timeout", type=argtypes.seconds, default="2.5")
    parser.add_argument("--switch", type=argtypes.host_port(default_port=20306, ipv4=True))
    args = parser.parse_args(["--workers", "3", "--switch", "10.0.0.1"])
    # argparse converts a default given as a string, too.
    assert (args.workers, args.timeout, args.switch) == (3, 2.5, ("10.0.0.1", 20306))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--workers", "0"])
    assert exit_info.value.code == 2
    assert "tool: error: argument --workers: 0 is not a positive integer" in capsys.readouterr().err


def test_argtypes_needs_nothing_else_of_the_project() -> None:
    # The softswitch uses it and must stay importable without the controller and the host.
    import ast

    tree = ast.parse(Path(argtypes.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported if name.startswith("omnireduce")}
