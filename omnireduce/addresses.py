"""MAC addresses as text, for every part of the project that reads or prints one (one parser, one format)."""

from __future__ import annotations

import re

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


def parse_mac(text: str) -> bytes:
    """'02:00:00:00:00:01' (or with dashes) as 6 bytes; ValueError naming the text otherwise."""
    if not isinstance(text, str) or not _MAC.match(text):
        raise ValueError(f"{text!r} is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)")
    return bytes.fromhex(text.replace("-", "").replace(":", ""))


def format_mac(mac: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in mac)
