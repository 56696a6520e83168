"""The softswitch's P4Runtime gRPC server, the way simple_switch_grpc serves BMv2.

- server.py: `P4RuntimeServer` (bind, start, stop); service.py: the RPCs, their checks and dispatch.
- arbitration.py: primary/backup election over StreamChannel; errors.py: the one exception type and the
  Device error mapping; rich_status.py: batch errors packed as `google.rpc.Status` details.
- p4info_map.py: ids <-> names of the P4Info; pipeline_check.py: the P4Info must describe the BMv2 JSON.
- table_ops.py with entry_codec.py (tables, direct counters), array_ops.py (counters, registers), pre_ops.py
  (multicast groups, clone sessions), bytestrings.py (P4Runtime's canonical integer encoding).
"""
