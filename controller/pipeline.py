"""The omnireduce pipeline's files (P4Info + BMv2 JSON, from p4src/build/ by default) and pushing them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path


from omnireduce.controller.errors import BadInputError
from omnireduce.controller.p4info import load_p4info
from omnireduce.controller.switch import Switch
from omnireduce.p4proto import p4info_pb2
from omnireduce.p4src import artifacts

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineFiles:
    p4info: Path = artifacts.P4INFO
    bmv2_json: Path = artifacts.BMV2_JSON

    def load(self) -> tuple[p4info_pb2.P4Info, bytes]:
        """The P4Info and the device config bytes, both checked to be what they claim to be."""
        p4info = load_p4info(self.p4info)
        try:
            device_config = Path(self.bmv2_json).read_bytes()
        except OSError as error:
            raise BadInputError(f"cannot read BMv2 JSON {self.bmv2_json}: {error.strerror}") from None
        try:
            program = json.loads(device_config)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadInputError(f"{self.bmv2_json} is not JSON: {error}") from None
        if not isinstance(program, dict) or "pipelines" not in program:
            raise BadInputError(f"{self.bmv2_json} is not a BMv2 program (no 'pipelines')")
        return p4info, device_config


def push(switch: Switch, files: PipelineFiles = PipelineFiles()) -> p4info_pb2.P4Info:
    """Install the pipeline on the switch (which forgets every entry and register value) and bind to it."""
    p4info, device_config = files.load()
    switch.push_pipeline(p4info, device_config)
    log.info("[%s] pushed %s + %s", switch.name, files.p4info, files.bmv2_json)
    return p4info
