"""The hook's config: TOML/JSON files, environment variables, and the clear errors for bad ones.

    .venv/bin/pytest -q tests/torch/test_config.py
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="omnireduce.torch tests need PyTorch: pip install -e '.[test,torch]'")

from omnireduce.host import TransportKind  # noqa: E402
from omnireduce.torch.config import (  # noqa: E402
    HookConfigError,
    config_from_env,
    load_config,
    parse_config,
)

LOOPBACK_TOML = """
switch = "10.0.0.254"
job = 3
slots = 8
workers = 2
join_timeout = 5

[[rank]]
bind = "127.0.0.1:40001"
frame_peer = "127.0.0.1:40002"
worker_addr = "10.0.0.1:20306"
mac = "02:00:00:00:00:01"
switch_mac = "02:00:00:00:00:fe"

[[rank]]
bind = "127.0.0.1:40003"
frame_peer = "127.0.0.1:40004"
worker_addr = "10.0.0.2"
mac = "02:00:00:00:00:02"
switch_mac = "02:00:00:00:00:fe"
"""


def test_a_loopback_config_gives_each_rank_its_frame_link():
    config = parse_config(LOOPBACK_TOML)
    agent = config.agent_config(rank=1, world_size=2)
    assert agent.transport is TransportKind.FRAME and agent.job_id == 3 and agent.slots == 8
    assert agent.worker_id == 1 and agent.workers == 2 and agent.timeouts.join == 5.0
    assert agent.frame_link.peer == ("127.0.0.1", 40004)
    assert str(agent.frame_link.worker.ip) == "10.0.0.2" and agent.frame_link.worker.port == 20306


def test_toml_and_json_round_trip():
    config = parse_config(LOOPBACK_TOML)
    assert parse_config(config.to_toml()) == config
    assert parse_config(config.to_json()) == config


def test_every_problem_is_reported_at_once_with_its_place():
    with pytest.raises(HookConfigError) as caught:
        parse_config('switch = "10.0.0.999"\nslots = "many"\nsltos = 3\n[[rank]]\nmac = "02:00:00:00:00:01"\n',
                     "my.toml")
    message = str(caught.value)
    for expected in ("my.toml: switch: '10.0.0.999' is not an IPv4 address", "my.toml: job: missing",
                     "my.toml: slots: expected an integer", "my.toml: sltos: unknown key",
                     "rank[0]: a frame link (loopback softswitch) needs frame_peer or frame_ring, and all of"):
        assert expected in message


def test_out_of_range_values_are_refused():
    with pytest.raises(HookConfigError, match="slots 0 must be in"):
        parse_config('switch = "10.0.0.254"\njob = 1\nslots = 0\n')
    with pytest.raises(HookConfigError, match="join_timeout: expected a positive number"):
        parse_config('switch = "10.0.0.254"\njob = 1\nslots = 4\njoin_timeout = -1\n')


def test_a_rank_without_its_table_or_another_world_size_is_refused():
    config = parse_config(LOOPBACK_TOML)
    with pytest.raises(HookConfigError, match="world size is 3"):
        config.agent_config(rank=0, world_size=3)


def test_environment_variables_make_a_kernel_udp_config(tmp_path):
    config = config_from_env({"OMNIREDUCE_SWITCH": "10.0.0.254:9000", "OMNIREDUCE_JOB": "2",
                              "OMNIREDUCE_SLOTS": "32"})
    agent = config.agent_config(rank=0, world_size=4)
    assert agent.transport is TransportKind.KERNEL_UDP and agent.switch_port == 9000 and agent.slots == 32
    path = tmp_path / "hook.toml"
    path.write_text(LOOPBACK_TOML)
    assert config_from_env({"OMNIREDUCE_TORCH_CONFIG": str(path)}) == load_config(path)


def test_missing_or_unreadable_configs_say_what_to_set(tmp_path):
    with pytest.raises(HookConfigError, match="OMNIREDUCE_TORCH_CONFIG=PATH"):
        config_from_env({})
    with pytest.raises(HookConfigError, match="OMNIREDUCE_SLOTS: missing"):
        config_from_env({"OMNIREDUCE_SWITCH": "10.0.0.254", "OMNIREDUCE_JOB": "1"})
    with pytest.raises(HookConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("switch = [")
    with pytest.raises(HookConfigError, match="not valid TOML or JSON"):
        load_config(tmp_path / "bad.toml")


RING_TOML = """
switch = "10.0.0.254"
job = 0
slots = 64

[[rank]]
frame_ring = "/dev/shm/omnireduce-rings-x/port1"
worker_addr = "10.0.0.1:20306"
mac = "02:00:00:00:00:01"
switch_mac = "02:00:00:00:00:fe"
"""


def test_a_ring_link_gives_the_rank_a_shared_memory_transport():
    config = parse_config(RING_TOML)
    agent = config.agent_config(rank=0, world_size=1)
    assert agent.transport is TransportKind.SHM and agent.frame_link.bind is None and agent.frame_link.peer is None
    assert str(agent.frame_link.ring) == "/dev/shm/omnireduce-rings-x/port1"
    assert agent.frame_link.worker.port == 20306
    assert "bind" not in config.to_toml()  # a ring link has no socket of its own
    assert parse_config(config.to_toml()) == config and parse_config(config.to_json()) == config


def test_a_frame_link_goes_one_way_only_and_says_what_is_missing():
    both = RING_TOML.replace('frame_ring = ', 'bind = "127.0.0.1:1"\nframe_peer = "127.0.0.1:2"\nframe_ring = ')
    with pytest.raises(HookConfigError, match="frame_peer .* or to frame_ring .*, not both"):
        parse_config(both)
    neither = RING_TOML.replace('frame_ring = "/dev/shm/omnireduce-rings-x/port1"\n', "")
    with pytest.raises(HookConfigError, match="missing frame_peer or frame_ring"):
        parse_config(neither)
    with pytest.raises(HookConfigError, match="rank.0..frame_ring: expected the path"):
        parse_config(RING_TOML.replace('"/dev/shm/omnireduce-rings-x/port1"', "3"))
    with pytest.raises(HookConfigError, match="missing mac"):
        parse_config(RING_TOML.replace('mac = "02:00:00:00:00:01"\n', ""))
