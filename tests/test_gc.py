"""The gc planner and runner (compiler_tasks/store/gc.py) on a real redis-server and a
folder store: what it may select (a hypothesis property over random stores and Redis
states), and what a deletion does when a compile or a result races it."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler_tasks.coordination.lock import Lock
from compiler_tasks.keys import RedisKeys, manifest_path
from compiler_tasks.store.base import StoredObject
from compiler_tasks.store.file import FileStore
from compiler_tasks.store.gc import KeyState, Report, collect, delete, plan, referenced
from tests.support.redis_server import RedisServer

NOW, GRACE = 1_000_000.0, 100.0
KEYS = [f"{i:x}" * 64 for i in range(1, 4)]  # three compile keys: 111…, 222…, …
TOKENS = ["t1", "t2"]


def result(key: str, outputs: list[str]) -> bytes:
    """A stored result as a worker writes it (the manifest), naming ``outputs``."""
    named = {f"e{i}.scss": {"css": p, "sha256": "0" * 64} for i, p in enumerate(outputs)}
    return json.dumps({"key": key, "status": "ok", "outputs": named}).encode()


artifact = st.builds(
    lambda key, token, name: f"artifacts/{key}/{token}/{name}.css",
    st.sampled_from(KEYS),
    st.sampled_from(TOKENS),
    st.sampled_from(["a", "b"]),
)
store_path = st.one_of(
    artifact,
    st.sampled_from([manifest_path(k) for k in KEYS]),
    st.sampled_from([f"bundles/{k}.tar.gz" for k in KEYS] + [f"bundles/{KEYS[0]}.s1.tar.gz"]),
    st.sampled_from(["other/x.css", "bundles/not-a-bundle", "artifacts/short/x.css"]),
)
ages = st.sampled_from([0.0, GRACE - 1, GRACE, GRACE * 10])


@st.composite
def world(draw: st.DrawFn) -> tuple[list[StoredObject], dict[str, KeyState]]:
    paths = draw(st.lists(store_path, unique=True, max_size=30))
    listing = [StoredObject(p, len(p), NOW - draw(ages)) for p in paths]
    states: dict[str, KeyState] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
        kind = draw(st.sampled_from(["result", "unreadable", "lock", "both", "none"]))
        # A result may name any artifact, another key's too (never written so, still safe).
        named = draw(st.lists(artifact, max_size=3))
        unreadable = draw(st.sampled_from([b"{not json", b"[]", b'{"key": "../x"}']))
        raw = unreadable if kind == "unreadable" else result(key, named)
        has_result = kind in ("result", "unreadable", "both")
        states[key] = KeyState(raw if has_result else None, kind in ("lock", "both"))
    for key in {p.split("/")[1] for p in paths if p.startswith("artifacts/")} & set(KEYS) - set(
        states
    ):
        if draw(st.booleans()):
            states[key] = KeyState()  # read: no result, no lock (else: unknown, kept)
    return listing, states


@settings(max_examples=400, deadline=None)
@given(world())
def test_plan_never_selects_what_a_live_result_or_compile_reaches(
    drawn: tuple[list[StoredObject], dict[str, KeyState]],
) -> None:
    listing, states = drawn
    chosen = plan(listing, states, now=NOW, grace=GRACE)
    selected = {o.path for o in chosen.objects()}
    live = {p for s in states.values() if s.result for p in referenced(s.result) or ()}
    assert not selected & live
    by_path = {o.path: o for o in listing}
    assert all(NOW - by_path[p].modified >= GRACE for p in selected)  # old enough
    assert all(p.startswith(("artifacts/", "bundles/")) and "short" not in p for p in selected)
    assert len(selected) + chosen.kept == len(listing)
    for key_plan in chosen.keys:
        state = states[key_plan.key]
        assert state.result is None and not state.locked
        whole = {o.path for o in listing if o.path.startswith(f"artifacts/{key_plan.key}/")}
        assert {o.path for o in key_plan.objects()} == whole  # a key goes whole or not at all
        assert key_plan.manifest is None or key_plan.manifest.path == manifest_path(key_plan.key)
    # ... and it is not empty-handed: every key nothing reaches, all of it old, is chosen
    for key, state in states.items():
        mine = [o for o in listing if o.path.startswith(f"artifacts/{key}/")]
        reached = state.result is not None or state.locked or any(o.path in live for o in mine)
        if mine and not reached and all(NOW - o.modified >= GRACE for o in mine):
            assert key in {k.key for k in chosen.keys}


def _compiled(store: FileStore, key: str) -> tuple[list[str], bytes]:
    """A finished compile's objects in ``store``: its outputs, manifest and result value."""
    outputs = [f"artifacts/{key}/{secrets.token_hex(16)}/main.css"]
    value = result(key, outputs)
    store.put(outputs[0], b".a{b:c}")
    store.put(manifest_path(key), value)
    return [*outputs, manifest_path(key)], value


@pytest.fixture
def fleet_redis(redis_server: RedisServer):  # type: ignore[no-untyped-def]
    client = redis_server.client()
    yield client, RedisKeys("t" + secrets.token_hex(5))
    client.close()


def test_collect_deletes_keys_without_result_and_keeps_live_and_locked(
    fleet_redis, tmp_path: Path
) -> None:
    client, rkeys = fleet_redis
    store = FileStore(str(tmp_path / "store"))
    live, value = _compiled(store, KEYS[0])
    client.set(rkeys.result(KEYS[0]), value, ex=60)
    gone, _ = _compiled(store, KEYS[1])  # its result expired
    busy, _ = _compiled(store, KEYS[2])  # no result yet, a compile holds its lock
    assert Lock(client, rkeys, KEYS[2], 60_000).acquire()
    store.put(f"bundles/{KEYS[2]}.tar.gz", b"archive")
    store.put("foreign/readme.txt", b"not scssq's")

    dry = collect(store, client, rkeys, grace=0, lock_ttl_ms=5000, apply=False)
    assert {o.path for o in dry.selected} == {*gone, f"bundles/{KEYS[2]}.tar.gz"}
    assert dry.deleted == 0 and all(store.exists(p) for p in gone)

    done = collect(store, client, rkeys, grace=0, lock_ttl_ms=5000, apply=True)
    assert done.deleted == 3 and done.deleted_bytes == dry.selected_bytes and not done.failed
    assert not any(store.exists(p) for p in gone)
    assert all(store.exists(p) for p in [*live, *busy, "foreign/readme.txt"])
    assert client.get(rkeys.lock(KEYS[1])) is None  # gc's hold of the key is released
    young = collect(store, client, rkeys, grace=3600, lock_ttl_ms=5000, apply=True)
    assert young.selected == []  # nothing is older than an hour


@pytest.mark.parametrize("race", ["result", "compile"])
def test_a_result_or_compile_that_appears_after_planning_keeps_the_key(
    fleet_redis, tmp_path: Path, race: str
) -> None:
    """The hit/compile racing a deletion: gc planned the key (no result, no lock), then a
    compile of it began or completed before gc took the key: nothing of it is deleted."""
    client, rkeys = fleet_redis
    store = FileStore(str(tmp_path / "store"))
    paths, value = _compiled(store, KEYS[2])
    chosen = plan(store.list("artifacts/"), {KEYS[2]: KeyState()}, now=time.time() + 1, grace=0)
    assert sorted(o.path for o in chosen.objects()) == sorted(paths)
    if race == "result":
        client.set(rkeys.result(KEYS[2]), value, ex=60)
    else:
        assert Lock(client, rkeys, KEYS[2], 60_000).acquire()
    report = Report(applied=True)
    delete(store, client, rkeys, chosen, lock_ttl_ms=5000, report=report)
    assert report.skipped == [KEYS[2]] and report.deleted == 0
    assert all(store.exists(p) for p in paths)
