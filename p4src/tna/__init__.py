"""omnireduce.p4src.tna: the Tofino (TNA) version of the aggregation program (p4src/tna/tna.p4)."""
