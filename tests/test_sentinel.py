"""Sentinel settings are checked at entry, and the client's master discovery says why
it found none (tests/faults/test_sentinel.py fails a master over under real load)."""

from __future__ import annotations

import dataclasses

import pytest

from compiler_tasks.errors import ConfigError, RedisUnavailable, SentinelUnavailable, exit_code_for
from compiler_tasks.protocol.sentinel import _master, connect
from compiler_tasks.settings import Settings
from tests.support.procs import free_port
from tests.support.sentinel import SERVICE, SentinelSetup

SENTINELS = {"SCSSQ_SENTINELS": "10.0.0.1:26379,sentinel-1:26380", "SCSSQ_SENTINEL_SERVICE": "m"}


def test_sentinels_are_read_as_host_port_pairs() -> None:
    settings = Settings.from_env({**SENTINELS, "SCSSQ_SENTINELS": "[::1]:26379, s-1:26380"})
    assert settings.sentinels == (("::1", 26379), ("s-1", 26380))
    assert settings.redis_shown == "the master of 'm' (Sentinels ::1:26379,s-1:26380)"
    assert Settings.from_env({}).sentinels == ()


@pytest.mark.parametrize(
    "env,complaint",
    [
        ({"SCSSQ_SENTINELS": "sentinel-0"}, "'sentinel-0' is not host:port; list them as"),
        ({"SCSSQ_SENTINELS": "a:1,b:99999"}, "SCSSQ_SENTINELS='a:1,b:99999': 'b:99999' is not"),
        ({"SCSSQ_SENTINELS": "a:1,"}, "'' is not host:port"),
        ({"SCSSQ_SENTINEL_SERVICE": ""}, "SCSSQ_SENTINELS is set but SCSSQ_SENTINEL_SERVICE"),
        ({"SCSSQ_SENTINELS": ""}, "SCSSQ_SENTINEL_SERVICE='m' needs SCSSQ_SENTINELS"),
        ({"SCSSQ_REDIS_URL": "unix:///run/redis.sock"}, "SCSSQ_REDIS_URL is a unix:// URL"),
        ({"SCSSQ_BROKER_URL": "redis://other:6379/0"}, "SCSSQ_BROKER_URL='redis://other:6379/0'"),
        ({"SCSSQ_SENTINEL_TLS": "maybe"}, "SCSSQ_SENTINEL_TLS='maybe': use 1"),
    ],
)
def test_a_bad_sentinel_setting_names_the_variable_the_value_and_the_fix(
    env: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**SENTINELS, **env})
    assert complaint in str(info.value)


def test_no_sentinel_answering_is_an_infrastructure_error_naming_each() -> None:
    ports = [free_port(), free_port()]
    settings = Settings.from_env(
        {
            "SCSSQ_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in ports),
            "SCSSQ_SENTINEL_SERVICE": "m",
        }
    )
    with pytest.raises(SentinelUnavailable) as info:
        connect(settings, 1.0)
    message = str(info.value)
    assert all(f"127.0.0.1:{p}:" in message for p in ports), message
    assert "no master of 'm' found through the Sentinels" in message
    # A failover's gap: retried like an unreachable socket, reported as exit 3.
    assert isinstance(info.value, OSError) and isinstance(info.value, RedisUnavailable)
    assert exit_code_for(info.value) == 3


def test_discovery_skips_a_dead_sentinel_and_names_an_unknown_service(
    sentinel_setup: SentinelSetup,
) -> None:
    settings = Settings.from_env(sentinel_setup.env())
    dead = ("127.0.0.1", free_port())
    first_dead = dataclasses.replace(settings, sentinels=(dead, *settings.sentinels))
    with connect(first_dead, 2.0) as conn:  # the master's password, from the URL
        assert conn.sock.getpeername()[1] == sentinel_setup.master_port
        assert conn.call(("ROLE",))[0][0] == b"master"

    unknown = dataclasses.replace(settings, sentinel_service="nope")
    with pytest.raises(SentinelUnavailable, match="knows no master named 'nope'"):
        connect(unknown, 2.0)
    wrong = dataclasses.replace(settings, sentinel_password="wrong")
    with pytest.raises(SentinelUnavailable, match=r"WRONGPASS|invalid password"):
        connect(wrong, 2.0)
    assert SERVICE in settings.redis_shown


def test_a_link_through_sentinel_is_one_connection_to_the_master(
    sentinel_setup: SentinelSetup,
) -> None:
    # The ROLE check is made on the connection that is kept: no second connect (with
    # TLS, no second handshake) per link.
    settings = Settings.from_env(sentinel_setup.env())
    master = sentinel_setup.direct(sentinel_setup.master_port)
    before = int(master.info("stats")["total_connections_received"])
    with connect(settings, 2.0, name="scssq-test") as conn:
        assert conn.call(("CLIENT", "GETNAME"))[0] == b"scssq-test"
    assert int(master.info("stats")["total_connections_received"]) - before == 1


def test_a_server_that_is_not_the_master_is_refused_and_closed(
    sentinel_setup: SentinelSetup,
) -> None:
    settings = Settings.from_env(sentinel_setup.env())
    replica = sentinel_setup.direct(sentinel_setup.replica_port)
    before = int(replica.info("clients")["connected_clients"])
    assert _master(settings, ("127.0.0.1", sentinel_setup.replica_port), 2.0, None) == "slave"
    assert int(replica.info("clients")["connected_clients"]) == before
