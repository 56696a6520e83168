"""omnireduce.host: the worker-side agent that all-reduces tensors through an omnireduce switch.

Library API: :class:`AllReduce` with an :class:`AgentConfig`; the CLI is ``omnireduce-agent`` (host/cli.py).
docs/protocol.md is the protocol it speaks.
"""

from .agent import AllReduce, open_transport
from .config import AgentConfig, FrameLink, Pacing, Timeouts, TransportKind
from .errors import (
    AgentClosed,
    AgentError,
    AgentTimeout,
    DeadlineExceeded,
    InputError,
    JobMismatch,
    OverflowRisk,
    PeerRefused,
    ProtocolError,
    Stalled,
    SwitchUnreachable,
    WorkerMissing,
)
from .stats import Stats

__all__ = [
    "AgentClosed",
    "AgentConfig",
    "AgentError",
    "AgentTimeout",
    "AllReduce",
    "DeadlineExceeded",
    "FrameLink",
    "InputError",
    "JobMismatch",
    "OverflowRisk",
    "Pacing",
    "PeerRefused",
    "ProtocolError",
    "Stalled",
    "Stats",
    "SwitchUnreachable",
    "Timeouts",
    "TransportKind",
    "WorkerMissing",
    "open_transport",
]
