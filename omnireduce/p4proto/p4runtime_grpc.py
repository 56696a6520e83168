"""The P4Runtime gRPC service (`p4.v1.P4Runtime`): client stub, servicer base and its registration.

The same API as grpc's generated `p4.v1.p4runtime_pb2_grpc`, which cannot be used as it imports p4runtime's own
(old) `p4runtime_pb2`. Methods, their message types and whether they stream come from the service's descriptor.
"""

from __future__ import annotations

from typing import Any

import grpc

from omnireduce.p4proto import p4runtime_pb2

SERVICE = p4runtime_pb2.DESCRIPTOR.services_by_name["P4Runtime"]


def _message_class(descriptor) -> Any:
    return getattr(p4runtime_pb2, descriptor.name)


def _kind(method) -> str:
    return (("stream" if method.client_streaming else "unary") + "_"
            + ("stream" if method.server_streaming else "unary"))


class P4RuntimeStub:
    """Client side: one callable per RPC (`stub.Write(request)`, `stub.StreamChannel(iterator)`, ...)."""

    def __init__(self, channel: grpc.Channel) -> None:
        for method in SERVICE.methods:
            make_callable = getattr(channel, _kind(method))
            setattr(self, method.name, make_callable(
                f"/{SERVICE.full_name}/{method.name}",
                request_serializer=_message_class(method.input_type).SerializeToString,
                response_deserializer=_message_class(method.output_type).FromString))


class P4RuntimeServicer:
    """Server side: subclass and override the RPCs served; the others answer UNIMPLEMENTED."""

    def _unimplemented(self, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")

    def Write(self, request, context):
        self._unimplemented(context)

    def Read(self, request, context):
        self._unimplemented(context)

    def SetForwardingPipelineConfig(self, request, context):
        self._unimplemented(context)

    def GetForwardingPipelineConfig(self, request, context):
        self._unimplemented(context)

    def StreamChannel(self, request_iterator, context):
        self._unimplemented(context)

    def Capabilities(self, request, context):
        self._unimplemented(context)


def add_P4RuntimeServicer_to_server(servicer: P4RuntimeServicer, server: grpc.Server) -> None:
    handlers = {}
    for method in SERVICE.methods:
        make_handler = getattr(grpc, f"{_kind(method)}_rpc_method_handler")
        handlers[method.name] = make_handler(
            getattr(servicer, method.name),
            request_deserializer=_message_class(method.input_type).FromString,
            response_serializer=_message_class(method.output_type).SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
