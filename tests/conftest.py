"""Said at the end of every run: which pipeline the softswitch ran the tests on and which kernels the agent used,
so that a CI log shows whether the compiled paths ran or the fallbacks (the tests of each skip, saying why, where
their backend does not build)."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:
    from omnireduce.host import native
    from omnireduce.softswitch.native.build import compiler_available

    missing = compiler_available()
    pipeline = "native (generated C) and python" if missing is None else f"python only (native: {missing})"
    kernels = "compiled (host/exchange.c) and numpy" if native.available() is not None else "numpy only"
    terminalreporter.write_line(f"omnireduce: softswitch pipelines tested: {pipeline}; agent kernels: {kernels}")
