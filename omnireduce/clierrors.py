"""How the four omnireduce command lines report errors, alike.

Every error is one line on stderr, `<prog>: error: <what>, <why>, <what to do>`, and the exit code names its kind
(each --help lists them). With `--json`, the error is also one JSON object on stdout, so that a script reading
stdout always gets JSON:

    {"ok": false, "error": "<the same line, without the prefix>", "exit_code": 2}

`JsonArgumentParser` does this for argparse's usage errors (exit 2) when `--json` is on the command line.
This module depends on nothing of the project, so every subpackage can use it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn, Sequence, TextIO

__all__ = ["JsonArgumentParser", "json_usage_errors", "report_error", "wants_json"]


def wants_json(argv: Sequence[str] | None, flag: str = "--json") -> bool:
    """Whether the command line asks for JSON output (looked up before parsing, for errors of the parsing)."""
    return flag in (sys.argv[1:] if argv is None else argv)


def report_error(prog: str, message: str, exit_code: int, *, json_output: bool, stdout: TextIO | None = None,
                 stderr: TextIO | None = None, **extra: object) -> int:
    """Write `message` as `<prog>: error: <message>` on stderr (and as JSON on stdout); return `exit_code`."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stderr.write(f"{prog}: error: {message}\n")
    stderr.flush()
    if json_output:
        stdout.write(json.dumps({"ok": False, "error": message, "exit_code": exit_code, **extra}) + "\n")
        stdout.flush()
    return exit_code


class JsonArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are also JSON on stdout when `json_errors` is set (see the module)."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            sys.stdout.write(json.dumps({"ok": False, "error": message, "exit_code": 2}) + "\n")
            sys.stdout.flush()
        super().error(message)


def json_usage_errors(parser: argparse.ArgumentParser, on: bool) -> None:
    """Turn JSON usage errors on or off for `parser` and each of its subcommands' parsers."""
    if isinstance(parser, JsonArgumentParser):
        parser.json_errors = on
    for action in parser._actions:  # noqa: SLF001 -- argparse exposes subcommands no other way
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                json_usage_errors(child, on)
