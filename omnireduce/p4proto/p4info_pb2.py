"""`p4.config.v1.p4info_pb2` of the installed p4runtime package, loadable on current protobuf
(see omnireduce/p4proto/__init__.py)."""

from google.protobuf import any_pb2  # noqa: F401  (imported by the P4Runtime .proto files)
from google.rpc import status_pb2  # noqa: F401
from omnireduce.p4proto import p4types_pb2  # noqa: F401  (imported by p4info.proto)
from omnireduce.p4proto.descriptors import build_module

globals().update(build_module("p4.config.v1.p4info_pb2", __name__))
