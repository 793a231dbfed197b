"""A client's cache-hit lookup on a real redis-server: one round trip once the engine
version is known, the submit counts riding along, and a lookup sent ahead that never
leaves a reply unread on the connection."""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from cli import lookup as lookup_module
from cli.client import Client, submit
from cli.config import SubmitConfig
from cli.lookup import REPLY_WAIT
from compiler_tasks.errors import BundleError, NoWorkers
from compiler_tasks.keys import CompileOptions, compile_key
from compiler_tasks.observability import stats
from compiler_tasks.protocol import resp
from compiler_tasks.settings import Settings

OPTIONS = CompileOptions(entries=("main.scss",))
DIGEST = "d" * 64
COMMIT = "c" * 40


def _client(redis_server, tmp_path: Path) -> Client:
    settings = dataclasses.replace(
        Settings(),
        redis_url=redis_server.url,
        prefix="t" + secrets.token_hex(4),
        store_url=f"file://{tmp_path}/store",
    )
    return Client(settings, name="lookup-" + secrets.token_hex(3))


def _publish(redis_server, client: Client, version: str) -> None:
    redis_server.client().hset(client.keys.engines, OPTIONS.engine, version)


@contextmanager
def _commands(redis_server, client: Client) -> Iterator[list[str]]:
    """The commands ``client``'s own connections send inside the block (MONITOR)."""
    name = client.redis.get_connection_kwargs()["client_name"]
    client.redis.ping()  # its connection exists (and is named) before MONITOR starts
    sent: list[str] = []
    with redis_server.client(decode_responses=True).monitor() as monitor:
        yield sent
        sentinel = "sentinel-" + secrets.token_hex(4)
        client.redis.get(sentinel)
        lines: list[str] = []
        while not any(sentinel in line for line in lines):
            lines.append(str(monitor.connection.read_response()))
    admin = redis_server.client(decode_responses=True)
    addrs = {c["addr"] for c in admin.client_list() if c.get("name") == name}
    for line in lines:
        match = re.search(r"\[\d+ ([^\]]+)\] (.*)", line)
        if match and match.group(1) in addrs and sentinel not in line:
            sent.append(match.group(2).split(" ")[0].strip('"'))


def test_the_first_lookup_learns_the_version_then_one_round_trip_answers(
    redis_server, tmp_path: Path
) -> None:
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    key = compile_key(DIGEST, OPTIONS, "1.0.0")
    redis_server.client().set(client.keys.result(key), b'{"status": "ok"}')
    with _commands(redis_server, client) as first:
        found = client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    assert (found.version, found.key, found.result, found.mapping) == (
        "1.0.0",
        key,
        b'{"status": "ok"}',
        None,
    )
    assert first == ["HGET", "HGET", "GET"]  # version and mapping, then the result
    client.lookups.count("cached")
    with _commands(redis_server, client) as second:
        again = client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    assert again == found
    assert second == ["INCR", "HGET", "GET", "HGET"]
    assert stats.read(redis_server.client(), client.keys.prefix)["hit"] == 1
    client.close()


def test_a_new_engine_version_gives_the_new_key(redis_server, tmp_path: Path) -> None:
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    _publish(redis_server, client, "2.0.0")
    new_key = compile_key(DIGEST, OPTIONS, "2.0.0")
    redis_server.client().set(client.keys.result(new_key), b'{"status": "ok"}')
    with _commands(redis_server, client) as sent:
        found = client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    assert (found.version, found.key, found.result) == ("2.0.0", new_key, b'{"status": "ok"}')
    assert sent == ["HGET", "GET", "HGET", "GET"]  # the old key's result, then the new one
    redis_server.client().hdel(client.keys.engines, OPTIONS.engine)
    with pytest.raises(NoWorkers, match=r"registered engine 'libsass'.*start the fleet"):
        client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    client.close()


def test_a_lookup_sent_ahead_for_another_digest_leaves_nothing_unread(
    redis_server, tmp_path: Path
) -> None:
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    mapping = json.dumps({"digest": DIGEST}).encode()
    redis_server.client().hset(client.keys.commit("demo", COMMIT), OPTIONS.variant(), mapping)
    config = SubmitConfig(src=tmp_path, out=tmp_path / "out", project="demo", options=OPTIONS)
    assert client.lookups.ahead(config, COMMIT) is None  # no digest known for the folder yet
    client.lookups.remember(config, "e" * 64)
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)  # the version is known now
    connection = client.redis.client_id()
    pending = client.lookups.ahead(config, COMMIT)
    assert pending is not None and pending.digest == "e" * 64
    private = client.lookups.private.conn
    assert private is not None and pending.private is private  # sent on its own connection
    assert pending.found_for(DIGEST) is None  # the sources changed: dropped
    assert client.redis.client_id() == connection
    assert client.lookups.private.conn is private  # drained, not closed and reconnected
    stored = b'{"status": "ok"}'  # DIGEST's result: a stale reply (e's: none) would show
    redis_server.client().set(client.keys.result(compile_key(DIGEST, OPTIONS, "1.0.0")), stored)
    for _ in range(3):  # every later command gets its own reply, on both connections
        assert client.redis.hget(client.keys.engines, OPTIONS.engine) == b"1.0.0"
        found = client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
        assert found.mapping == mapping and found.result == stored
        client.lookups.remember(config, DIGEST)
        ahead = client.lookups.ahead(config, COMMIT)
        assert ahead is not None and ahead.private is private
        found = ahead.found_for(DIGEST)
        assert found is not None and found.mapping == mapping and found.result == stored
        client.lookups.remember(config, "e" * 64)
        dropped = client.lookups.ahead(config, COMMIT)
        assert dropped is not None and dropped.found_for(DIGEST) is None
        client.lookups.remember(config, DIGEST)
    client.close()
    assert client.lookups.private.conn is None


def test_a_lookup_sent_ahead_whose_connection_dies_is_looked_up_again(
    redis_server, tmp_path: Path
) -> None:
    """Redis holds the pipeline (writes paused: it starts with a count) and the
    connection is killed before it answers: the submit looks up again on a new one."""
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    config = SubmitConfig(src=tmp_path, out=tmp_path / "out", project="demo", options=OPTIONS)
    client.lookups.remember(config, DIGEST)
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    client.lookups.count("cached")
    admin = redis_server.client(decode_responses=True)
    admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        pending = client.lookups.ahead(config, COMMIT)
        assert pending is not None and pending.counted == 1
        name = client.redis.get_connection_kwargs()["client_name"]
        held = [c for c in admin.client_list() if c.get("name") == name]
        assert held and all(admin.client_kill(c["addr"]) for c in held)
        assert pending.found_for(DIGEST) is None
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    found = client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    assert found.version == "1.0.0" and found.key == compile_key(DIGEST, OPTIONS, "1.0.0")
    # the lookups' own connection (killed with the others) is opened again, not given up
    assert client.lookups.private.conn is None and not client.lookups.private.off
    pending = client.lookups.ahead(config, COMMIT)
    assert pending is not None and pending.private is not None
    found_again = pending.found_for(DIGEST)
    assert found_again is not None and found_again.key == found.key
    client.close()


def test_a_refused_count_does_not_fail_the_lookup(redis_server, tmp_path: Path) -> None:
    """A client whose Redis user may not INCR the counters still gets its lookups."""
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    user, password = "nocount-" + secrets.token_hex(3), secrets.token_hex(8)
    admin = redis_server.client()
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all", "-incr", "-incrby"
    )
    try:
        settings = dataclasses.replace(
            client.settings,
            redis_url=redis_server.url.replace("redis://", f"redis://{user}:{password}@"),
        )
        limited = Client(settings)
        limited.lookups.count("cached")
        found = limited.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
        assert found.version == "1.0.0" and not limited.lookups.counts.names
        config = SubmitConfig(src=tmp_path, out=tmp_path / "o", project="demo", options=OPTIONS)
        limited.lookups.remember(config, DIGEST)
        limited.lookups.count("cached")  # sent ahead on the lookups' own connection
        pending = limited.lookups.ahead(config, COMMIT)
        assert pending is not None and pending.private is not None and pending.counted == 1
        found = pending.found_for(DIGEST)
        assert found is not None and found.version == "1.0.0"
        assert not limited.lookups.private.off
        limited.lookups.count("compiled")
        limited.close()  # the flush is refused too, quietly
        assert stats.read(admin, client.keys.prefix) == {"hit": 0, "miss": 0, "shared": 0}
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        client.close()


def test_a_bad_bundle_fails_at_once_with_a_lookup_sent_ahead(redis_server, tmp_path: Path) -> None:
    """The sources turn out to hold no stylesheet while a lookup is on its way, and Redis
    holds the lookup (writes paused: it starts with a count): the submit fails at once
    instead of waiting for the replies, and the client's next lookup is answered."""
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    src = tmp_path / "src"
    src.mkdir()
    config = SubmitConfig(src=src, out=tmp_path / "out", project="demo", options=OPTIONS)
    client.lookups.remember(config, DIGEST)
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    client.lookups.count("cached")
    admin = redis_server.client()
    admin.execute_command("CLIENT", "PAUSE", 20_000, "WRITE")
    try:
        with pytest.raises(BundleError, match=r"holds no \.scss or \.sass file"):
            submit(client, config, COMMIT, timeout=60)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    assert client.lookups.private.conn is None  # closed with the replies it held
    found = client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    assert found.version == "1.0.0"
    pending = client.lookups.ahead(config, COMMIT)
    assert pending is not None and pending.private is not None
    found_ahead = pending.found_for(DIGEST)
    assert found_ahead is not None and found_ahead.key == found.key
    client.close()


def test_no_workers_read_ahead_leaves_the_connection_usable(redis_server, tmp_path: Path) -> None:
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    config = SubmitConfig(src=tmp_path, out=tmp_path / "out", project="demo", options=OPTIONS)
    client.lookups.remember(config, DIGEST)
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    connection = client.redis.client_id()
    redis_server.client().hdel(client.keys.engines, OPTIONS.engine)
    pending = client.lookups.ahead(config, COMMIT)
    assert pending is not None
    with pytest.raises(NoWorkers):
        pending.found_for(DIGEST)
    assert client.redis.client_id() == connection  # every reply read, released
    private = client.lookups.private.conn
    assert private is not None and pending.private is None  # every reply read there too
    _publish(redis_server, client, "1.0.0")
    assert client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT).version == "1.0.0"
    pending = client.lookups.ahead(config, COMMIT)
    assert pending is not None and pending.private is private
    found = pending.found_for(DIGEST)
    assert found is not None and found.version == "1.0.0"
    client.close()


def test_counts_sent_at_close_never_hold_it_up(redis_server, tmp_path: Path) -> None:
    """Redis holds the counts (writes paused): ``close`` gives up after REPLY_WAIT."""
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    client.lookups.count("cached")
    admin = redis_server.client()
    admin.execute_command("CLIENT", "PAUSE", 20_000, "WRITE")
    try:
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < REPLY_WAIT + 2
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")


@pytest.mark.parametrize(
    "command",
    [("GET", "k"), ("HGET", "scssq:commit:projé:" + "c" * 40, "0123abcd"), ("INCR", "")],
)
def test_a_lookup_is_packed_as_redis_py_packs_it(command: tuple[str, ...]) -> None:
    assert resp.encode(command) == b"".join(redis.Connection().pack_command(*command))


def test_a_warm_lookup_goes_over_a_named_connection_of_its_own(
    redis_server, tmp_path: Path
) -> None:
    """The lookup sent ahead skips redis-py's pool: it goes out on the lookups' own RESP2
    connection, named like the client's others (``CLIENT LIST`` and counts per client
    name keep working), and the client's pooled connection sends nothing for it."""
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    config = SubmitConfig(src=tmp_path, out=tmp_path / "out", project="demo", options=OPTIONS)
    client.lookups.remember(config, DIGEST)
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    name = client.redis.get_connection_kwargs()["client_name"]
    pooled = client.redis.client_id()
    admin = redis_server.client(decode_responses=True)
    for _ in range(2):
        pending = client.lookups.ahead(config, COMMIT)
        assert pending is not None
        found = pending.found_for(DIGEST)
        assert found is not None and found.key == compile_key(DIGEST, OPTIONS, "1.0.0")
    named = {int(c["id"]): c["cmd"] for c in admin.client_list() if c.get("name") == name}
    assert len(named) == 2 and named.pop(pooled) == "client|id"  # the pool: nothing since
    assert list(named.values()) == ["hget"]  # the lookup's last command, on its own one
    client.close()


def test_a_url_the_lookup_connection_does_not_speak_uses_redis_py(
    redis_server, tmp_path: Path
) -> None:
    """``?protocol=3`` is redis-py's option, not compiler_tasks.protocol.resp's: every lookup goes
    through redis-py's pool, with the same answers."""
    client = _client(redis_server, tmp_path)
    settings = dataclasses.replace(client.settings, redis_url=redis_server.url + "?protocol=3")
    client.close()
    client = Client(settings, name="lookup-" + secrets.token_hex(3))
    _publish(redis_server, client, "1.0.0")
    config = SubmitConfig(src=tmp_path, out=tmp_path / "out", project="demo", options=OPTIONS)
    client.lookups.remember(config, DIGEST)
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    pending = client.lookups.ahead(config, COMMIT)
    assert pending is not None and pending.private is None and client.lookups.private.off
    found = pending.found_for(DIGEST)
    assert found is not None and found.key == compile_key(DIGEST, OPTIONS, "1.0.0")
    client.close()


def _warm(redis_server, tmp_path: Path) -> tuple[Client, SubmitConfig, bytes]:
    """A client whose next lookup is sent ahead, and the result stored for DIGEST."""
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    stored = b'{"status": "ok"}'
    redis_server.client().set(client.keys.result(compile_key(DIGEST, OPTIONS, "1.0.0")), stored)
    config = SubmitConfig(src=tmp_path, out=tmp_path / "out", project="demo", options=OPTIONS)
    client.lookups.remember(config, DIGEST)
    client.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
    return client, config, stored


def test_replies_left_by_an_abandoned_lookup_never_answer_the_next(
    redis_server, tmp_path: Path
) -> None:
    """A lookup whose Pending is lost before it is read (an interrupt right after it
    went out) leaves its replies on the connection: the next lookup gets a new one."""
    client, config, stored = _warm(redis_server, tmp_path)
    client.lookups.send("e" * 64, OPTIONS, "demo", COMMIT, private=True)  # never read
    abandoned = client.lookups.private.conn
    assert abandoned is not None and abandoned.unread >= 3  # (and its CLIENT SETNAME)
    pending = client.lookups.ahead(config, COMMIT)
    assert pending is not None and pending.private is not abandoned
    found = pending.found_for(DIGEST)
    assert found is not None and found.result == stored  # not the other lookup's None
    client.close()


def test_a_connection_the_server_closed_is_replaced_before_counts_go_out(
    redis_server, tmp_path: Path
) -> None:
    """Redis closed the idle lookup connection (its ``timeout``, a restart): the counts
    riding on the next lookup still arrive."""
    client, config, stored = _warm(redis_server, tmp_path)
    first = client.lookups.ahead(config, COMMIT)
    assert first is not None and first.found_for(DIGEST) is not None
    admin = redis_server.client(decode_responses=True)
    name = client.redis.get_connection_kwargs()["client_name"]
    (private,) = [c for c in admin.client_list() if c.get("name") == name and c["cmd"] == "hget"]
    admin.client_kill_filter(_id=private["id"])
    conn, wait_until = client.lookups.private.conn, time.monotonic() + 5
    assert conn is not None
    while conn.idle() and time.monotonic() < wait_until:
        time.sleep(0.01)  # the close reaches this side
    client.lookups.count("cached")
    pending = client.lookups.ahead(config, COMMIT)
    assert pending is not None and pending.private is not None and pending.counted == 1
    found = pending.found_for(DIGEST)
    assert found is not None and found.result == stored
    assert stats.read(admin, client.keys.prefix)["hit"] == 1
    client.close()


def test_a_password_changed_since_turns_the_lookup_connection_off(
    redis_server, tmp_path: Path
) -> None:
    """The private connection opens after the client's pooled one: a password changed in
    between is refused to it for good, and lookups go on over the pooled connection."""
    client = _client(redis_server, tmp_path)
    _publish(redis_server, client, "1.0.0")
    user, password = "rotated-" + secrets.token_hex(3), secrets.token_hex(8)
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    try:
        url = redis_server.url.replace("redis://", f"redis://{user}:{password}@")
        limited = Client(dataclasses.replace(client.settings, redis_url=url), name="rotated")
        config = SubmitConfig(src=tmp_path, out=tmp_path / "o", project="demo", options=OPTIONS)
        limited.lookups.remember(config, DIGEST)
        limited.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)  # the pooled connection
        admin.execute_command("ACL", "SETUSER", user, "resetpass", ">" + secrets.token_hex(8))
        pending = limited.lookups.ahead(config, COMMIT)
        assert pending is not None and pending.private is not None
        assert pending.found_for(DIGEST) is None  # WRONGPASS: looked up the redis-py way
        assert limited.lookups.private.off
        found = limited.lookups.lookup(DIGEST, OPTIONS, "demo", COMMIT)
        assert found.version == "1.0.0"
        later = limited.lookups.ahead(config, COMMIT)
        assert later is not None and later.private is None  # the pooled connection
        assert later.found_for(DIGEST) is not None
        limited.close()
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        client.close()


@pytest.mark.parametrize(
    ("error", "lasting"),
    [
        (resp.RespError(resp.REFUSED + "WRONGPASS invalid username-password pair"), True),
        (resp.RespError(resp.REFUSED + "NOPERM this user has no permissions"), True),
        (resp.RespError(resp.REFUSED + "LOADING Redis is loading the dataset in memory"), False),
        (resp.RespError(resp.REFUSED + "BUSY Redis is busy running a script"), False),
        (resp.RespError("connection closed or malformed reply"), False),
        (OSError("timed out"), False),
    ],
)
def test_which_refusals_turn_the_lookup_connection_off(error: Exception, lasting: bool) -> None:
    assert lookup_module._lasting(error) is lasting
