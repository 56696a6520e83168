"""The native (C) packet pipeline against the Python one, its fallback, its cache and its batch API.

    .venv/bin/pytest tests/softswitch/test_native.py -q
"""

from __future__ import annotations

import json
import logging

import pytest
from switch_helpers import program_json

from omnireduce.bench.frame_generators import omnireduce_frames
from omnireduce.p4src import artifacts
from omnireduce.softswitch.device import Device
from omnireduce.softswitch.errors import FailedPrecondition
from omnireduce.softswitch.native.build import compiler_available

pytestmark = pytest.mark.skipif(compiler_available() is not None, reason=f"no native build: {compiler_available()}")


def _allreduce_run(backend: str, batch: bool) -> tuple[list, dict, dict]:
    device = Device(name=f"diff-{backend}", backend=backend)
    device.load_pipeline(artifacts.BMV2_JSON.read_bytes())
    assert device.backend == backend
    frames = omnireduce_frames(device, blocks=192)
    if batch:
        outputs = device.process_batch(frames)
    else:
        outputs = [out for port, frame in frames for out in device.process_packet(port, frame)]
    registers = {name: device.register_read_all(name).tolist() for name in device.register_names()}
    return outputs, device.stats_snapshot(), registers


def test_an_allreduce_gives_identical_frames_stats_and_registers_on_both_pipelines():
    python = _allreduce_run("python", batch=False)
    native = _allreduce_run("native", batch=False)
    assert len(native[0]) == len(python[0]) > 100
    assert native[0] == python[0]
    assert native[1] == python[1]
    assert native[2] == python[2]


def test_a_batch_gives_what_the_frames_give_one_by_one():
    assert _allreduce_run("native", batch=True) == _allreduce_run("native", batch=False)
    assert _allreduce_run("python", batch=True)[0] == _allreduce_run("native", batch=True)[0]


def _with_wide_field() -> bytes:
    """tables_test.json with one metadata field widened to 128 bits, which the native slots cannot hold."""
    program = json.loads(program_json("tables_test").read_text())
    for header_type in program["header_types"]:
        if header_type["name"] == "standard_metadata":
            continue
        if header_type["fields"] and not any(h["header_type"] == header_type["name"] and not h["metadata"]
                                             for h in program["headers"]):
            header_type["fields"].append(["wide_unused", 128, False])
            return json.dumps(program).encode()
    raise AssertionError("tables_test.json has no user metadata to widen")


def test_auto_falls_back_to_python_for_what_native_does_not_lower_and_says_why(caplog):
    device = Device(backend="auto")
    with caplog.at_level(logging.WARNING, logger="omnireduce.softswitch.backend"):
        device.load_pipeline(_with_wide_field())
    assert device.backend == "python"
    assert "128 bits" in caplog.text and "python" in caplog.text


def test_native_refuses_what_it_does_not_lower():
    with pytest.raises(FailedPrecondition, match="128 bits"):
        Device(backend="native").load_pipeline(_with_wide_field())


def test_compiled_modules_are_cached_by_program(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from omnireduce.softswitch.native import build

    monkeypatch.setattr(build, "_loaded", {})
    Device(backend="native").load_pipeline(program_json("checksum_test").read_bytes())
    cached = list((tmp_path / "omnireduce" / "softswitch").glob("_omnireduce_ss_*"))
    assert len(cached) == 1
    compiles = []
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_compile", lambda *args: compiles.append(args))
    Device(backend="native").load_pipeline(program_json("checksum_test").read_bytes())
    assert compiles == []


def test_the_generated_c_is_visible_for_debugging():
    device = Device(backend="native")
    device.load_pipeline(program_json("arith_test").read_bytes())
    source = device.generated_sources()["<native>"]
    assert "PIPE_ingress" in source and "ss_parse" in source
