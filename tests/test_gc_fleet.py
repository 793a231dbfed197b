"""``scssq gc`` on real parts: redis-server, celery workers, the folder store and moto's
S3 server, ``scssq`` processes. What a user checks: the store stops growing while
results expire, live results keep their CSS, and submits racing a gc run (hits, and
compiles of keys whose old artifacts it is deleting) exit 0 with the engine's CSS."""

from __future__ import annotations

import json
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sass

from compiler_tasks.keys import manifest_path
from compiler_tasks.store import Store, open_store
from compiler_tasks.store.gc import ARTIFACTS, BUNDLES, referenced
from tests.hostile.forge import producer, request
from tests.support.fleet import SCSSQ, Fleet, wait_until
from tests.test_fleet import make_src, submit_args

pytestmark = pytest.mark.integration


def run_gc(fleet: Fleet, cwd: Path, *args: str) -> dict[str, Any]:
    """``scssq gc --json --grace 0 ARGS`` as an operator runs it; its report."""
    proc = fleet.scssq("gc", "--json", "--grace", "0", *args, cwd=cwd, timeout=180)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def objects(store: Store) -> set[str]:
    return {o.path for o in [*store.list(ARTIFACTS), *store.list(BUNDLES)]}


def live_results(fleet: Fleet) -> dict[str, bytes]:
    """Compile key -> stored result, for every result Redis holds now."""
    found = {}
    for name in fleet.redis.scan_iter(f"{fleet.prefix}:result:*", count=1000):
        raw = fleet.redis.get(name)
        if raw is not None:
            found[name.decode().rsplit(":", 1)[1]] = raw
    return found


def compile_through_workers(fleet: Fleet, tag: str, count: int) -> list[str]:
    """``count`` distinct tiny stylesheets compiled by the fleet's workers, sent as a
    client's requests (inline bundles); returns their keys once every compile ended."""
    runs = len(fleet.engine_runs())
    keys = []
    with producer(fleet) as app:
        for i in range(count):
            css = f".{tag}-{i} {{ a: b; }}\n".encode()
            commit = secrets.token_hex(20)
            job = request(fleet, files={"main.scss": css}, commit=commit)
            app.send_task("scssq.compile", kwargs={"request": job}, queue=fleet.prefix)
            keys.append(job["key"])

    def ended() -> bool:
        locks = list(fleet.redis.scan_iter(f"{fleet.prefix}:lock:*"))
        return len(fleet.engine_runs()) >= runs + count and not locks

    wait_until(ended, timeout=180)
    return keys


def test_thousands_of_compiles_leave_a_store_bounded_by_live_results(
    make_fleet, tmp_path: Path
) -> None:
    """1600 distinct compiles through real workers, results kept 2 s, gc after each
    round of 400: what stays is what live results name, and once every result expired
    the store is empty. Stale holders' leftovers (outputs without a result) go too.

    Every compile goes through a real worker (about 100 a second on two pool processes
    here), sent as a client's request rather than by 1600 ``scssq submit`` processes,
    whose start-up would dominate the test's time."""
    fleet = make_fleet(workers=1, concurrency=2, result_ttl=2)
    store = open_store(fleet.env["SCSSQ_STORE"])
    rounds, per_round, sizes = 4, 400, []
    for r in range(rounds):
        compile_through_workers(fleet, f"r{r}", per_round)
        for _ in range(20):  # what a holder that lost its lock leaves behind
            store.put(f"artifacts/{secrets.token_hex(32)}/{secrets.token_hex(16)}/a.css", b"x")
        before = live_results(fleet)
        report = run_gc(fleet, tmp_path, "--apply")
        after = objects(store)
        sizes.append(len(after))
        assert report["deleted"]["objects"] >= 20 and not report["failed"], report
        allowed = {p for raw in before.values() for p in referenced(raw) or ()}
        assert after <= allowed, "only what a live result named may remain"
        assert len(after) <= 2 * len(before)  # a manifest and a CSS per live result
        for key, raw in live_results(fleet).items():  # still live: all of it is there
            assert manifest_path(key) in after and referenced(raw) <= after  # type: ignore[operator]
    assert max(sizes) < rounds * per_round, sizes  # without gc: 2 objects x 1600 compiles
    wait_until(lambda: not live_results(fleet), timeout=30)
    run_gc(fleet, tmp_path, "--apply")
    assert objects(store) == set()
    assert len(fleet.engine_runs()) == rounds * per_round


def engine_css(text: str) -> bytes:
    return sass.compile(string=text, output_style="expanded").encode()


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    return str(request.getfixturevalue("s3_store_url"))


def test_a_hit_whose_artifacts_gc_deleted_recompiles(
    make_fleet, tmp_path: Path, store_url: str
) -> None:
    """A client read a result just before it expired; gc then deleted its artifacts (no
    result, nothing reaches them). Its download finds them missing: the repair path
    compiles again, and the submit exits 0 with the engine's CSS."""
    fleet = make_fleet(workers=1, store=store_url)
    text = ".repair { color: red; }\n"
    src = make_src(tmp_path, {"main.scss": text})
    first = fleet.scssq("submit", *submit_args(src, tmp_path / "o1"), "a" * 40, cwd=tmp_path)
    assert first.returncode == 0, first.stderr + fleet.logs()
    (name,) = fleet.redis.keys(f"{fleet.prefix}:result:*")
    held = fleet.redis.get(name)
    assert held is not None
    fleet.redis.delete(name)  # the result's retention ended
    report = run_gc(fleet, tmp_path, "--apply")
    paths = referenced(held)
    assert paths is not None and set(report["selected"]["paths"]) == paths
    assert report["deleted"]["objects"] == len(paths) == 2
    fleet.redis.set(name, held, ex=60)  # ... but the racing client had read it before
    second = fleet.scssq("submit", *submit_args(src, tmp_path / "o2"), "a" * 40, cwd=tmp_path)
    assert second.returncode == 0, second.stderr + fleet.logs()
    assert second.stdout.startswith("compiled")
    assert (tmp_path / "o2" / "main.css").read_bytes() == engine_css(text)
    assert len(fleet.engine_runs()) == 2


def test_a_herd_of_submits_during_gc_all_get_the_engines_css(
    make_fleet, tmp_path: Path, s3_store_url: str
) -> None:
    """On S3 (moto): 1040 stale objects to delete, 5 live results and 5 whose results
    expired. While ``scssq gc --apply`` deletes, 10 ``scssq submit`` run: the 5 hits and
    5 compiles of the keys whose old artifacts gc is deleting. All exit 0 with the
    engine's CSS; gc deleted the stale objects and nothing a live result names."""
    fleet = make_fleet(workers=1, concurrency=2, store=s3_store_url, lock_ttl=2)
    store = open_store(s3_store_url)
    texts = [f".herd-{i} {{ n: {i}; }}\n" for i in range(10)]
    srcs = [make_src(tmp_path, {"main.scss": t}, name=f"src{i}") for i, t in enumerate(texts)]
    compiles = [
        fleet.spawn("submit", *submit_args(src, tmp_path / f"first{i}"), f"{i:040x}", cwd=src)
        for i, src in enumerate(srcs)
    ]
    assert [p.wait(timeout=120) for p in compiles] == [0] * 10, fleet.logs()
    expired = [bytes(k) for k in fleet.redis.keys(f"{fleet.prefix}:result:*")][5:]
    fleet.redis.delete(*expired)  # 5 results' retention ended: their artifacts are stale
    stale: set[str] = set()
    for _ in range(520):  # more than a page of ListObjectsV2 (1000 objects)
        key = secrets.token_hex(32)
        stale |= {f"artifacts/{key}/manifest.json", f"artifacts/{key}/t/main.css"}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda path: store.put(path, b"{}"), stale))
    gc = subprocess.Popen(
        [SCSSQ, "gc", "--json", "--grace", "0", "--apply"],
        env=fleet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = min(stale)
    wait_until(lambda: not store.exists(first) or gc.poll() is not None, timeout=60)
    herd = [
        fleet.spawn("submit", *submit_args(src, tmp_path / f"o{i}"), f"{i:040x}", cwd=src)
        for i, src in enumerate(srcs)
    ]
    for i, proc in enumerate(herd):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{out}\n{err}\n{fleet.logs()}"
        assert (tmp_path / f"o{i}" / "main.css").read_bytes() == engine_css(texts[i])
    out, err = gc.communicate(timeout=120)
    assert gc.returncode == 0, out + err
    report = json.loads(out)
    assert report["deleted"]["objects"] >= len(stale) and not report["failed"]
    left = objects(store)
    assert not left & stale
    for key, raw in live_results(fleet).items():
        assert manifest_path(key) in left and referenced(raw) <= left  # type: ignore[operator]
    assert len(live_results(fleet)) == 10
