"""omnireduce.testbed: testbed runs (embedded loopback or Mininet) of the whole system."""
