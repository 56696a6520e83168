"""The controller's exceptions: one family, each with the CLI exit code that names its kind of failure.

Every gRPC error is wrapped exactly once (in `client.py`) into one of these; nothing above the client ever sees a
`grpc.RpcError`. A batch write that fails names each failed update (index, status code, the switch's message, and
what the update was) so a human can tell which of 500 register writes the switch refused.
"""

from __future__ import annotations

from dataclasses import dataclass

# Exit codes of `omnireduce-ctl`, one per failure kind (documented in its --help).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_SWITCH_REFUSED = 4
EXIT_NOT_PRIMARY = 5
EXIT_PIPELINE_MISMATCH = 6


class ControllerError(Exception):
    """Base of every error the controller raises on purpose."""

    exit_code: int = EXIT_INTERNAL


class BadInputError(ControllerError):
    """The request itself is wrong (bad argument, config file, unknown job or name, conflict with installed state)."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
    """A config file (TOML) that cannot be parsed or does not validate; the message names file and location."""


class NameLookupError(BadInputError, LookupError):
    """A P4Info name that does not exist; the message suggests the closest existing name."""


class SwitchUnreachableError(ControllerError):
    """No P4Runtime server answered at the address before the deadline (or the connection dropped)."""

    exit_code = EXIT_UNREACHABLE


class NotPrimaryError(ControllerError):
    """This client lost (or never won) master arbitration, so the switch would refuse its writes."""

    exit_code = EXIT_NOT_PRIMARY


class PipelineMismatchError(ControllerError):
    """The switch runs no pipeline, or one whose P4Info differs from ours; writing to it would corrupt its state."""

    exit_code = EXIT_PIPELINE_MISMATCH


@dataclass(frozen=True, slots=True)
class UpdateFailure:
    """One refused update of a batch write: its index in the batch we sent, the status and what it was."""

    index: int
    code: str
    message: str
    update: str

    def __str__(self) -> str:
        return f"update #{self.index} ({self.update}): {self.code}: {self.message}"


class P4RuntimeError(ControllerError):
    """The switch answered an RPC with an error status. `failures` lists each refused update of a batch write."""

    exit_code = EXIT_SWITCH_REFUSED

    def __init__(self, operation: str, code: str, details: str, failures: tuple[UpdateFailure, ...] = ()) -> None:
        self.operation = operation
        self.code = code
        self.details = details
        self.failures = failures
        lines = [f"{operation} failed: {code}: {details}" if details else f"{operation} failed: {code}"]
        lines.extend(f"  {failure}" for failure in failures)
        super().__init__("\n".join(lines))

    @property
    def failed_indexes(self) -> frozenset[int]:
        return frozenset(failure.index for failure in self.failures)

    def only(self, *codes: str) -> bool:
        """True when every named failure has one of `codes` (e.g. NOT_FOUND while rolling back)."""
        return bool(self.failures) and all(failure.code in codes for failure in self.failures)
