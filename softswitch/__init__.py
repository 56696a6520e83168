"""omnireduce.softswitch: an embedded software v1model target that runs the BMv2 JSON p4c-bm2-ss compiles.

- device.py: the Device API (pipeline, tables, counters, registers, PRE, process_packet); see
  docs/softswitch.md. engine.py: the simple_switch packet path (clones, resubmit, recirculate).
- program.py (typed view of the JSON), phv.py (PHV layout), pipeline.py (compile a program), codegen/ (JSON
  -> generated Python: expressions, actions, parser, controls, deparser, checksums), tables.py, state.py,
  pre.py, hashes.py.
- ports.py, pcap.py, cli.py: the `omnireduce-switch` process (UDP/AF_PACKET ports, packet loop, CLI).
- p4runtime/: the P4Runtime gRPC server (server.py starts it, service.py answers the RPCs).
"""
