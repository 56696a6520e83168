"""Translate a BMv2 JSON program into Python source, compiled once at load time (no JSON walking per packet)."""
