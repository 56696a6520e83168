"""omnireduce.testbed: testbed runs (embedded loopback or Mininet) of the whole system.

The folder is named mininet/ but is imported as omnireduce.testbed only; it must never shadow the real Mininet
package (the Mininet driver, star_driver.py, runs under Debian's Python with -P for that reason).
"""

from .model import Fault, FaultKind, NetKind, PortKind, SwitchKind, TestbedConfig, TestbedReport
from .runner import ConfigError, run_testbed

__all__ = ["ConfigError", "Fault", "FaultKind", "NetKind", "PortKind", "SwitchKind", "TestbedConfig",
           "TestbedReport", "run_testbed"]
