"""omnireduce-p4: sparse in-network aggregation in a P4 switch.

The subpackages map onto the repository's top-level folders (see pyproject.toml):
``omnireduce.p4src`` (P4 program and the constants derived from it), ``omnireduce.softswitch``,
``omnireduce.controller``, ``omnireduce.host`` and ``omnireduce.testbed`` (folder ``mininet/``).
"""

__version__ = "0.1.0"
