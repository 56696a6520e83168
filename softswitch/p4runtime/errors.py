"""The one exception type of the P4Runtime server: a gRPC status code plus a message naming the thing.

Everything below the gRPC handlers raises `P4RuntimeError`; the handlers turn it into the RPC status
(or into one `p4.v1.Error` of a batch). Device errors (`softswitch.errors.DeviceError` subclasses) are
converted here, once, so their codes map 1:1 onto gRPC codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from omnireduce.softswitch.errors import DeviceError


class P4RuntimeError(Exception):
    """A failure that P4Runtime reports to the client with `code` and `message`."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @classmethod
    def invalid_argument(cls, message: str) -> P4RuntimeError:
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def not_found(cls, message: str) -> P4RuntimeError:
        return cls(grpc.StatusCode.NOT_FOUND, message)

    @classmethod
    def already_exists(cls, message: str) -> P4RuntimeError:
        return cls(grpc.StatusCode.ALREADY_EXISTS, message)

    @classmethod
    def permission_denied(cls, message: str) -> P4RuntimeError:
        return cls(grpc.StatusCode.PERMISSION_DENIED, message)

    @classmethod
    def failed_precondition(cls, message: str) -> P4RuntimeError:
        return cls(grpc.StatusCode.FAILED_PRECONDITION, message)

    @classmethod
    def out_of_range(cls, message: str) -> P4RuntimeError:
        return cls(grpc.StatusCode.OUT_OF_RANGE, message)

    @classmethod
    def resource_exhausted(cls, message: str) -> P4RuntimeError:
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    @classmethod
    def unimplemented(cls, message: str) -> P4RuntimeError:
        return cls(grpc.StatusCode.UNIMPLEMENTED, message)


# DeviceError subclass name -> gRPC code. Matching by class name (rather than importing each class)
# keeps this table valid for any subclass S1's errors module grows, as long as it is named for its code.
_DEVICE_ERROR_CODES: dict[str, grpc.StatusCode] = {
    "NotFound": grpc.StatusCode.NOT_FOUND,
    "AlreadyExists": grpc.StatusCode.ALREADY_EXISTS,
    "InvalidArgument": grpc.StatusCode.INVALID_ARGUMENT,
    "OutOfRange": grpc.StatusCode.OUT_OF_RANGE,
    "ResourceExhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "FailedPrecondition": grpc.StatusCode.FAILED_PRECONDITION,
    "PermissionDenied": grpc.StatusCode.PERMISSION_DENIED,
    "Unimplemented": grpc.StatusCode.UNIMPLEMENTED,
}


def grpc_code_of(code: object) -> grpc.StatusCode | None:
    """Interpret a device error's `code` attribute: a grpc.StatusCode, its name, or its number."""
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, str):
        return grpc.StatusCode.__members__.get(code.upper())
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status
    return None


def from_device_error(error: Exception) -> P4RuntimeError:
    """The P4Runtime view of an error raised by the softswitch Device."""
    for cls in type(error).__mro__:
        code = _DEVICE_ERROR_CODES.get(cls.__name__)
        if code is not None:
            break
    else:
        code = grpc_code_of(getattr(error, "code", None)) or grpc.StatusCode.UNKNOWN
    message = getattr(error, "message", None) or str(error)
    return P4RuntimeError(code, str(message))


@contextmanager
def device_errors() -> Iterator[None]:
    """Run Device calls, re-raising its DeviceErrors as the equivalent P4RuntimeError."""
    try:
        yield
    except DeviceError as error:
        raise from_device_error(error) from error
