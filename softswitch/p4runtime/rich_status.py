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
# gRPC clients refuse response metadata past 16 KiB by default (recent ones may refuse past 8 KiB), and the details
# trailer travels base64-encoded (4/3 its size) beside the message: a batch's details are cut to this many bytes.
MAX_DETAILS_BYTES = 4096
# Per-item messages are cut to this length in the details, and so is each failure the summary names.
MAX_ITEM_MESSAGE_CHARS = 200
SUMMARY_FAILURES = 3


@dataclass(frozen=True, slots=True)
class RichStatus(grpc.Status):
    """A grpc.Status for `ServicerContext.abort_with_status`."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, bytes], ...]


def _cut(message: str) -> str:
    return message if len(message) <= MAX_ITEM_MESSAGE_CHARS else message[:MAX_ITEM_MESSAGE_CHARS - 3] + "..."


def p4_error(error: P4RuntimeError | None) -> p4runtime_pb2.Error:
    """The `p4.v1.Error` of one batch item: OK (no other field) when `error` is None."""
    if error is None:
        return p4runtime_pb2.Error(canonical_code=grpc.StatusCode.OK.value[0])
    return p4runtime_pb2.Error(canonical_code=error.code.value[0], message=_cut(error.message))


def first_failures(errors: Sequence[P4RuntimeError | None], item: str) -> str:
    """"update 3: NOT_FOUND: ...; update 7: ..." for the first few failed items, each message cut short."""
    named = [f"{item} {index}: {error.code.name}: {_cut(error.message)}"
             for index, error in enumerate(errors) if error is not None][:SUMMARY_FAILURES]
    return "; ".join(named)


def batch_status(errors: Sequence[P4RuntimeError | None], summary: str,
                 code: grpc.StatusCode = grpc.StatusCode.UNKNOWN, item: str = "item") -> RichStatus:
    """The status of a batch with per-item `errors` (None = that item succeeded).

    The details hold one `p4.v1.Error` per item in order, as the spec asks, as far as MAX_DETAILS_BYTES allows:
    a client indexing them by item still finds each in its place, and the message then says which items the
    details cover. `summary` should name the first failures (`first_failures`), which the details may not reach.
    """
    details = []
    size = 0
    for error in errors:
        packed = any_pb2.Any()
        packed.Pack(p4_error(error))
        size += packed.ByteSize() + 4   # with the repeated field's tag and length
        if size > MAX_DETAILS_BYTES:
            break
        details.append(packed)
    if len(details) < len(errors):
        summary += (f"; status details list {item}s 0..{len(details) - 1} only, the other "
                    f"{len(errors) - len(details)} are left out to fit gRPC's metadata limit")
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
