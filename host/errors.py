"""Errors the host agent raises: one base class, one subclass per cause a caller can act on.

Every failure of an all-reduce ends in one of these within a bounded time; the agent never hangs and never returns
a result it cannot vouch for.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error the omnireduce agent raises."""


class InputError(AgentError, ValueError):
    """The tensor cannot be all-reduced as given.

    A mistake in the call (dtype, `out`, size) is raised before anything is sent: it is the caller's code, which
    every worker of the job runs alike. Bad values (NaN or Inf), which one worker's data may hold and the others'
    not, are announced in the scale round instead (docs/protocol.md section 5): this worker raises InputError, the
    others PeerRefused, nothing is aggregated and the job stays usable.
    """


class OverflowRisk(AgentError, ArithmeticError):
    """An int32 sum over the job's workers could overflow 32 bits (docs/protocol.md section 5).

    Raised after the scale round, on every worker of the job alike, so the job stays usable.
    """


class JobMismatch(AgentError):
    """The job's workers disagree on the tensor (length, dtype, slot count) or on the worker count.

    Detected in the scale round, before any data is sent, on every worker of the job alike, so the job stays usable.
    """


class PeerRefused(AgentError):
    """Another worker of the job refused its own input (NaN or Inf values) and announced it in the scale round.

    Raised on every worker whose own input was fine, before any data is sent; the refusing workers raise
    InputError. Nothing is aggregated and the job stays usable.
    """


class SwitchUnreachable(AgentError, ConnectionError):
    """The operating system reports the switch (or the softswitch port) unreachable (ICMP refused, no route)."""


class AgentTimeout(AgentError, TimeoutError):
    """Base class of the time limits: the job's state on the switch is unknown afterwards (reset the job)."""


class WorkerMissing(AgentTimeout):
    """The scale round got no result in time: a worker never showed up, or the switch drops or ignores our packets."""


class Stalled(AgentTimeout):
    """No result arrived for too long in the middle of a tensor (a worker or the switch went away)."""


class DeadlineExceeded(AgentTimeout):
    """The all-reduce did not finish within its overall deadline."""


class ProtocolError(AgentError):
    """The switch answered something the protocol does not allow (e.g. shadow sets out of step after a job reset)."""


class AgentClosed(AgentError):
    """The agent was closed, or a previous failure left it out of step with the switch."""
