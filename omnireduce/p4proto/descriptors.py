"""Build the message classes of one of p4runtime's generated modules from the file descriptor it embeds.

Generated code of any protoc version carries the `.proto` file as a serialized FileDescriptorProto: old protoc as
`FileDescriptor(..., serialized_pb=b'...')`, current protoc as `AddSerializedFile(b'...')`. We find that bytes
literal in the module's source with `ast` (the module is never imported: an old one would raise on protobuf >= 4),
add it to the default descriptor pool and let protobuf's builder make the classes, which is all current generated
code does itself.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.internal import builder


class P4ProtoError(ImportError):
    """The installed p4runtime package has no readable generated module where one was expected."""


def _serialized_descriptor(source: str, origin: str) -> bytes:
    for node in ast.walk(ast.parse(source, origin)):
        if isinstance(node, ast.keyword) and node.arg == "serialized_pb":
            value = node.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "AddSerializedFile" and node.args):
            value = node.args[0]
        else:
            continue
        data = ast.literal_eval(value)
        if isinstance(data, bytes):
            return data
    raise P4ProtoError(f"{origin} holds no serialized file descriptor: is it protoc output?")


def build_module(generated_module: str, module_name: str) -> dict[str, Any]:
    """The names (`DESCRIPTOR`, message classes, enums and their values) of the generated module
    `generated_module` (e.g. "p4.v1.p4runtime_pb2"), built for a module called `module_name`.

    Its imports (other .proto files) must be in the default pool already: import their modules first.
    """
    spec = importlib.util.find_spec(generated_module)
    if spec is None or spec.origin is None:
        raise P4ProtoError(f"{generated_module} is not installed (the p4runtime package provides it)")
    origin = Path(spec.origin)
    file_descriptor = descriptor_pool.Default().AddSerializedFile(
        _serialized_descriptor(origin.read_text(encoding="utf-8"), str(origin)))
    names: dict[str, Any] = {"DESCRIPTOR": file_descriptor}
    builder.BuildMessageAndEnumDescriptors(file_descriptor, names)
    builder.BuildTopDescriptorsAndMessages(file_descriptor, module_name, names)
    return names
