"""Independent P4Runtime clients (p4runtime-shell, finsy), each in a venv of its own, driven as subprocesses.

Why their own venvs: they pin protobuf and p4runtime versions that cannot share one environment with ours
(p4runtime-shell 0.0.6 wants protobuf < 3.21 and p4runtime 1.4.1, finsy 0.30 protobuf 6 and its own protos),
and what they must prove is that a client built on other bindings understands our server.

The venvs are made on first use under `.venv-clients/` at the repository root (ignored by git; override with
$OMNIREDUCE_CLIENT_VENVS), once per requirement set, under a file lock so parallel test runs share them. Each client
runs a scenario script of this folder (`shell_scenarios.py`, `finsy_scenarios.py`), which prints what it observed
as one JSON object; the tests assert on that. Where a venv cannot be made (no package index reachable), the tests
that need it skip and say why.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = Path(__file__).resolve().parent
VENVS_ENV = "OMNIREDUCE_CLIENT_VENVS"
# Making a venv downloads and installs a few packages: minutes on a slow mirror, never forever.
INSTALL_TIMEOUT_S = 600.0
SCENARIO_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One independent client: its venv's name and what pip installs into it."""

    name: str
    requirements: tuple[str, ...]
    script: str


P4RUNTIME_SHELL = ClientSpec("p4runtime-shell", ("p4runtime-shell==0.0.6",), "shell_scenarios.py")
FINSY = ClientSpec("finsy", ("finsy==0.30.0",), "finsy_scenarios.py")


class ClientUnavailable(RuntimeError):
    """The client's venv could not be made."""


class ScenarioFailed(AssertionError):
    """A scenario script exited with an error (its stderr says where)."""


def venvs_root() -> Path:
    return Path(os.environ.get(VENVS_ENV) or REPO_ROOT / ".venv-clients")


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ClientUnavailable(f"`{' '.join(argv[:4])} ...` failed: {' | '.join(tail)}")


def ensure_venv(spec: ClientSpec) -> Path:
    """The python of `spec`'s venv, made (or remade, when its requirements changed) if needed."""
    root = venvs_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / spec.name
    stamp = venv / "omnireduce-requirements.txt"
    wanted = "\n".join(spec.requirements) + "\n"
    with open(root / f"{spec.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # another test run may be making the same venv
        if stamp.is_file() and stamp.read_text() == wanted and _venv_python(venv).exists():
            return _venv_python(venv)
        try:
            _run([sys.executable, "-m", "venv", "--clear", str(venv)])
            _run([str(_venv_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  *spec.requirements])
        except subprocess.TimeoutExpired:
            raise ClientUnavailable(f"installing {', '.join(spec.requirements)} took over "
                                    f"{INSTALL_TIMEOUT_S:g} s") from None
        stamp.write_text(wanted)
    return _venv_python(venv)


_unavailable: dict[str, str] = {}


def client_python_or_skip(spec: ClientSpec) -> Path:
    """The client's python; skips the calling test (and, remembered, the later ones) where it cannot be made."""
    if spec.name in _unavailable:
        pytest.skip(_unavailable[spec.name])
    try:
        return ensure_venv(spec)
    except ClientUnavailable as error:
        _unavailable[spec.name] = f"cannot make a venv with {spec.name} (needs the package index): {error}"
        pytest.skip(_unavailable[spec.name])


@dataclass(frozen=True, slots=True)
class Client:
    """A ready client venv: runs its scenarios against a server."""

    spec: ClientSpec
    python: Path

    def run(self, scenario: str, address: str, *args: str, timeout: float = SCENARIO_TIMEOUT_S) -> dict:
        """Run `scenario` against the P4Runtime server at `address`; what the script observed, as a dict."""
        argv = [str(self.python), str(SCRIPTS_DIR / self.spec.script), scenario, "--address", address, *args]
        # The script must see only its own venv: none of our environment's packages or paths.
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        if result.returncode != 0:
            raise ScenarioFailed(f"{self.spec.name} scenario '{scenario}' exited {result.returncode}:\n"
                                 f"{result.stderr[-4000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def client_or_skip(spec: ClientSpec) -> Client:
    return Client(spec, client_python_or_skip(spec))
