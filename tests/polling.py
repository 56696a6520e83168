"""The tests' one way to wait (poll a condition until it holds or a deadline passes, never a fixed sleep) and to stop
what they started."""

from __future__ import annotations

import subprocess
import time
from typing import Callable

POLL_INTERVAL_S = 0.02


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               abort: Callable[[], str | None] = lambda: None) -> None:
    """Return once `condition()` holds; raise TimeoutError naming `what` after `timeout` seconds, or RuntimeError
    as soon as `abort()` returns a reason (a process that died while we waited on it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        reason = abort()
        if reason:
            raise RuntimeError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(POLL_INTERVAL_S)


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a process a test started: SIGTERM, then SIGKILL if it has not exited after `grace_s` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
