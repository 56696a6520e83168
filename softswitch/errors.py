"""Errors raised by the softswitch Device.

Each subclass is named after the gRPC status code it stands for, so the P4Runtime server maps them 1:1
(it matches on the class name, see softswitch/p4runtime/errors.py). `code` carries the same name for callers
that prefer an attribute.
"""

from __future__ import annotations


class DeviceError(Exception):
    """A refused Device request: `code` is a gRPC status name, `message` names the offending thing."""

    code = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFound(DeviceError):
    code = "NOT_FOUND"


class AlreadyExists(DeviceError):
    code = "ALREADY_EXISTS"


class InvalidArgument(DeviceError):
    code = "INVALID_ARGUMENT"


class OutOfRange(DeviceError):
    code = "OUT_OF_RANGE"


class ResourceExhausted(DeviceError):
    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(DeviceError):
    """No pipeline is loaded (or the request needs state the device is not in)."""

    code = "FAILED_PRECONDITION"


class PermissionDenied(DeviceError):
    """A write to something the program declares immutable (tables with const entries, const defaults)."""

    code = "PERMISSION_DENIED"


class UnsupportedProgram(InvalidArgument):
    """The BMv2 JSON uses a construct this target does not implement; the message names it."""
