"""`p4.v1.p4runtime_pb2` of the installed p4runtime package, loadable on current protobuf
(see omnireduce/p4proto/__init__.py)."""

from google.protobuf import any_pb2  # noqa: F401  (imported by the P4Runtime .proto files)
from google.rpc import status_pb2  # noqa: F401
from omnireduce.p4proto import p4data_pb2, p4info_pb2  # noqa: F401  (imported by p4runtime.proto)
from omnireduce.p4proto.descriptors import build_module

globals().update(build_module("p4.v1.p4runtime_pb2", __name__))
