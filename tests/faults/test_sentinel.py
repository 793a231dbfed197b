"""Redis fails over under Sentinel while a herd of submitters waits and a compile runs.

Real processes: a master, a replica, three ``redis-sentinel`` (tests/support/sentinel.py),
two celery workers and eight ``scssq submit`` processes, all configured with
``SCSSQ_SENTINELS``; ``SCSSQ_REDIS_URL`` names no server that listens (only its password
and database count), so nothing reaches Redis except through the Sentinels. The master
goes away (``kill -9``) or is demoted (``SENTINEL FAILOVER``) mid-compile. Every
submitter gets the engine's CSS byte for byte, or exits 3 with a message and no output;
a lock lost with the old master (asynchronous replication) costs at most one more
compile; and the same workers, never restarted, serve what comes after.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sass

from tests.faults.test_faults import _subscribers, engine_parent, spawn_many
from tests.support.fleet import Fleet
from tests.support.procs import wait_for
from tests.support.sentinel import SentinelSetup
from tests.test_fleet import HASH2, make_src, slow_scss, submit_args

pytestmark = pytest.mark.integration

HERD = 8
#: Each submitter's --timeout: far above a failover (about 2 s) plus two compiles.
TIMEOUT = 60
#: Seconds of engine time of the herd's compile: the failover happens inside it.
COMPILE_SECONDS = 6.0


@functools.cache
def engine_css(scss: str) -> bytes:
    """What libsass itself makes of ``scss`` (the fleet's engine, default options)."""
    return sass.compile(string=scss, output_style="expanded").encode()


@pytest.fixture
def ha_fleet(sentinel_setup: SentinelSetup, tmp_path: Path) -> Iterator[Fleet]:
    env = sentinel_setup.env()
    fleet = Fleet(env["SCSSQ_REDIS_URL"], tmp_path, lock_ttl=4, visibility_timeout=300)
    fleet.env.update(env)
    fleet.redis = sentinel_setup.master()
    try:
        for _ in range(2):
            fleet.start_worker(concurrency=1, wait=False)
        fleet.wait_workers(2)
        yield fleet
    finally:
        fleet.stop()


@pytest.mark.parametrize("fault", ["kill -9", "SENTINEL FAILOVER"])
def test_a_failover_mid_compile_gives_every_submitter_the_css_or_exit_3(
    ha_fleet: Fleet, sentinel_setup: SentinelSetup, tmp_path: Path, fault: str
) -> None:
    fleet, setup = ha_fleet, sentinel_setup
    scss = slow_scss(COMPILE_SECONDS)
    src = make_src(tmp_path, {"main.scss": scss})
    procs = spawn_many(fleet, HERD, src, tmp_path, "--timeout", str(TIMEOUT))
    engine_parent(fleet, 1)
    wait_for(lambda: _subscribers(fleet) >= HERD, 30, "the herd to be waiting")
    assert not fleet.redis.keys(f"{fleet.prefix}:result:*")  # the compile still runs
    if fault == "kill -9":
        setup.kill_master()
    else:
        setup.failover()
    setup.wait_promoted(setup.replica_port)

    results = [(p.wait(TIMEOUT + 30), *p.communicate()) for p in procs]
    expected = engine_css(scss)
    for i, (code, out, err) in enumerate(results):
        css = tmp_path / f"out{i}" / "main.css"
        if code == 0:
            assert css.read_bytes() == expected, out
        else:  # allowed: a clear infrastructure error, and nothing written
            assert code == 3, f"{out}\n{err}\n--- workers:\n{fleet.logs()}"
            assert re.search(r"Redis|timed out", err) and "Traceback" not in err, err
            assert not css.exists()
    assert any(code == 0 for code, _, _ in results), fleet.logs() + setup.logs()
    # A lock the replica never received lets a second compile through; never a third.
    assert 1 <= len(fleet.engine_runs()) <= 2, fleet.engine_runs()
    assert fleet.redis.keys(f"{fleet.prefix}:lock:*") == []

    assert all(worker.poll() is None for worker in fleet.workers)  # never restarted
    _serves_after_the_failover(fleet, tmp_path)


def _serves_after_the_failover(fleet: Fleet, tmp: Path) -> None:
    """A new bundle compiles on the new master, and is then a hit: the client finds the
    new master through the Sentinels for every command."""
    runs = len(fleet.engine_runs())
    new = ".after { failover: over; }\n"
    after = make_src(tmp, {"main.scss": new}, "after")
    proc = fleet.scssq("submit", HASH2, *submit_args(after, tmp / "o2"), cwd=tmp)
    assert proc.returncode == 0, proc.stderr + fleet.logs()
    assert proc.stdout.startswith("compiled")
    assert (tmp / "o2" / "main.css").read_bytes() == engine_css(new)
    assert len(fleet.engine_runs()) == runs + 1

    hit = fleet.scssq("submit", HASH2, *submit_args(after, tmp / "o3"), cwd=tmp)
    assert hit.returncode == 0 and hit.stdout.startswith("cached"), hit.stderr
    assert (tmp / "o3" / "main.css").read_bytes() == engine_css(new)
