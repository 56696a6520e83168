"""gRPC statuses that carry a `google.rpc.Status` with details, the way P4Runtime reports batch errors.

P4Runtime (spec "Error Reporting") answers a Write or Read batch in which some items failed with the
gRPC code UNKNOWN and a binary `google.rpc.Status` in the `grpc-status-details-bin` trailer, whose
`details` hold one `p4.v1.Error` per item, in order, `OK` for the ones that succeeded. This is what
clients (p4runtime-shell's P4RuntimeWriteException, ONOS, finsy) parse. The `grpcio-status` package
does the same packing; building it here saves a dependency for a dozen lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

from omnireduce.p4proto import p4runtime_pb2
from omnireduce.softswitch.p4runtime.errors import P4RuntimeError

DETAILS_TRAILER_KEY = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class RichStatus(grpc.Status):
    """A grpc.Status for `ServicerContext.abort_with_status`."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, bytes], ...]


def p4_error(error: P4RuntimeError | None) -> p4runtime_pb2.Error:
    """The `p4.v1.Error` of one batch item: OK (no other field) when `error` is None."""
    if error is None:
        return p4runtime_pb2.Error(canonical_code=grpc.StatusCode.OK.value[0])
    return p4runtime_pb2.Error(canonical_code=error.code.value[0], message=error.message)


def batch_status(errors: Sequence[P4RuntimeError | None], summary: str,
                 code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> RichStatus:
    """The status of a batch with per-item `errors` (None = that item succeeded)."""
    details = []
    for error in errors:
        packed = any_pb2.Any()
        packed.Pack(p4_error(error))
        details.append(packed)
    status = status_pb2.Status(code=code.value[0], message=summary, details=details)
    return RichStatus(code, summary, ((DETAILS_TRAILER_KEY, status.SerializeToString()),))


def unpack_batch_errors(trailing_metadata: Sequence[tuple[str, bytes | str]] | None) -> list[p4runtime_pb2.Error]:
    """The per-item `p4.v1.Error`s in an RPC error's trailers (empty when there are none)."""
    for key, value in trailing_metadata or ():
        if key == DETAILS_TRAILER_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            errors = []
            for packed in status.details:
                error = p4runtime_pb2.Error()
                if packed.Unpack(error):
                    errors.append(error)
            return errors
    return []
