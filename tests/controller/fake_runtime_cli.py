"""A stand-in for BMv2's `simple_switch_CLI`, for the register commands only, with the same text interface.

It keeps register arrays in the JSON file named by $FAKE_BMV2_REGISTERS ({name: [cells]}), reads commands on
stdin and answers exactly as tools/runtime_CLI.py does (prompt "RuntimeCmd: ", `name[i]= v`, `name= v, v`,
"Error: Invalid register name (x)", "Invalid register operation (INVALID_INDEX)"). It lets the tests check the
controller's command generation and output parsing where BMv2 is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--thrift-port", type=int, default=9090)
    parser.add_argument("--thrift-ip", default="localhost")
    args = parser.parse_args()
    state_path = Path(os.environ["FAKE_BMV2_REGISTERS"])
    if args.thrift_port != int(os.environ.get("FAKE_BMV2_THRIFT_PORT", "9090")):
        print(f"Could not connect to thrift client on port {args.thrift_port}")
        print("Make sure the switch is running and that you have the right port")
        return 1
    registers = json.loads(state_path.read_text())
    print("Obtaining JSON from switch...\nDone\nControl utility for runtime P4 table manipulation")
    for line in sys.stdin:
        words = line.split()
        out = "RuntimeCmd: "
        if not words:
            print(out)
            continue
        command, rest = words[0], words[1:]
        name = rest[0] if rest else ""
        if name not in registers:
            print(out + f"Error: Invalid register name ({name})")
            continue
        cells = registers[name]
        if command == "register_read" and len(rest) == 1:
            sys.stderr.write("register index omitted, reading entire array\n")
            print(out + f"{name}= " + ", ".join(str(value) for value in cells))
        elif command == "register_read" and len(rest) == 2:
            index = int(rest[1])
            print(out + (f"{name}[{index}]= {cells[index]}" if index < len(cells)
                         else "Invalid register operation (INVALID_INDEX)"))
        elif command == "register_write" and len(rest) == 3:
            index, value = int(rest[1]), int(rest[2])
            if index < len(cells):
                cells[index] = value
                print(out, end="")
            else:
                print(out + "Invalid register operation (INVALID_INDEX)")
        else:
            print(out + f"Error: unsupported by this fake: {line.strip()}")
    print("RuntimeCmd: ")
    state_path.write_text(json.dumps(registers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
