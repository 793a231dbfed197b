"""Fault suite: kills, freezes, outages and shutdowns on real processes.

Every test asserts outcomes and counts: each submitter finishes before its
--timeout with the right CSS or a clear error, compiles are counted by the
engine children themselves, nothing is left locked.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, wait_until
from tests.support.procs import wait_for
from tests.support.proxy import TcpProxy
from tests.support.redis_server import RedisServer
from tests.test_fleet import HASH1, HASH2, make_src, slow_scss, submit_args

pytestmark = pytest.mark.integration


def engine_parent(fleet: Fleet, runs: int, timeout: float = 30) -> int:
    """PID of the pool process whose engine child started compile number ``runs``."""
    wait_for(lambda: len(fleet.engine_runs()) >= runs, timeout, f"compile #{runs} to start")
    child = int(fleet.engine_runs()[runs - 1].split()[0])
    stat = Path(f"/proc/{child}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def spawn_many(fleet: Fleet, n: int, src: Path, tmp: Path, *extra: str) -> list:
    return [
        fleet.spawn("submit", HASH1, *submit_args(src, tmp / f"out{i}"), *extra, cwd=tmp)
        for i in range(n)
    ]


def finish_all(procs: list, fleet: Fleet, timeout: float = 120) -> list[tuple[int, str, str]]:
    results = [(p.wait(timeout), *p.communicate()) for p in procs]
    failures = [r for r in results if r[0] != 0]
    assert not failures, f"{failures[:3]}\n--- workers:\n{fleet.logs()}"
    return results


def same_css(tmp: Path, n: int) -> bytes:
    outputs = {(tmp / f"out{i}" / "main.css").read_bytes() for i in range(n)}
    assert len(outputs) == 1
    return outputs.pop()


@pytest.mark.parametrize("submitters", [1, 20])
def test_kill_9_of_the_pool_process_compiling(make_fleet, tmp_path: Path, submitters: int) -> None:
    fleet = make_fleet(workers=2, concurrency=1, lock_ttl=2, visibility_timeout=300)
    src = make_src(tmp_path, {"main.scss": slow_scss(2.0)})
    procs = spawn_many(fleet, submitters, src, tmp_path, "--timeout", "60")
    os.kill(engine_parent(fleet, 1), signal.SIGKILL)
    finish_all(procs, fleet)
    assert b"n: " in same_css(tmp_path, submitters)
    assert 2 <= len(fleet.engine_runs()) <= 2
    assert fleet.redis.keys(f"{fleet.prefix}:lock:*") == []


@pytest.mark.parametrize("submitters", [1, 20])
def test_kill_9_of_the_whole_worker(make_fleet, tmp_path: Path, submitters: int) -> None:
    """The holder's main process dies with its pool: its message is only redelivered
    after the visibility timeout, so the submitters notice the lock vanish with no
    result and enqueue once more; the other worker compiles."""
    fleet = make_fleet(workers=2, concurrency=1, lock_ttl=2, visibility_timeout=300)
    src = make_src(tmp_path, {"main.scss": slow_scss(2.0)})
    procs = spawn_many(fleet, submitters, src, tmp_path, "--timeout", "60")
    pool = engine_parent(fleet, 1)
    holder = next(w for w in fleet.workers if str(w.pid) in _ancestors(pool))
    os.killpg(holder.pid, signal.SIGKILL)
    finish_all(procs, fleet)
    assert b"n: " in same_css(tmp_path, submitters)
    assert len(fleet.engine_runs()) == 2


def _ancestors(pid: int) -> set[str]:
    found = set()
    while pid > 1:
        found.add(str(pid))
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def test_frozen_holder_neither_publishes_nor_overwrites(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=2, concurrency=1, lock_ttl=1, visibility_timeout=300)
    src = make_src(tmp_path, {"main.scss": slow_scss(2.0)})
    proc = fleet.spawn("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path)
    stale = engine_parent(fleet, 1)
    os.kill(stale, signal.SIGSTOP)
    try:
        assert proc.wait(60) == 0, proc.communicate()
        key = json.loads(
            fleet.scssq("status", HASH1, "--project", "demo", "--json", cwd=tmp_path).stdout
        )[0]["key"]
        result = fleet.redis.get(f"{fleet.prefix}:result:{key}")
        manifest = tmp_path / "store" / "artifacts" / key / "manifest.json"
        before = manifest.read_bytes()
        pubsub = fleet.redis.pubsub()
        pubsub.subscribe(f"{fleet.prefix}:done:{key}")
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    finally:
        os.kill(stale, signal.SIGCONT)
    wait_for(
        lambda: "was lost" in fleet.full_logs() or "lost before" in fleet.full_logs(),
        30,
        "the stale holder to notice",
    )
    time.sleep(0.5)
    assert pubsub.get_message(timeout=1) is None  # nothing announced by the stale holder
    assert fleet.redis.get(f"{fleet.prefix}:result:{key}") == result
    assert manifest.read_bytes() == before
    assert (
        json.loads(before)["outputs"]["main.scss"]["css"]
        in json.loads(result)["outputs"]["main.scss"]["css"]
    )
    assert len(fleet.engine_runs()) == 2


def _serves_a_new_bundle(fleet: Fleet, tmp: Path, scss: str) -> None:
    """The fleet compiles a new bundle (``main.scss`` = ``scss``) after the fault."""
    src = make_src(tmp, {"main.scss": scss}, "after")
    proc = fleet.scssq("submit", HASH2, *submit_args(src, tmp / "o2"), "--timeout", "60", cwd=tmp)
    assert proc.returncode == 0, proc.stderr + fleet.logs()


def _three_waiting(fleet: Fleet, tmp: Path, compile_seconds: float, timeout: int) -> list:
    """3 submitters of one bundle whose compile takes ``compile_seconds``, returned once
    the compile runs and all 3 wait on its channel (``--timeout`` ``timeout``)."""
    src = make_src(tmp, {"main.scss": slow_scss(compile_seconds)})
    procs = spawn_many(fleet, 3, src, tmp, "--timeout", str(timeout))
    engine_parent(fleet, 1)
    wait_for(lambda: _subscribers(fleet) >= 3, 30, "all 3 clients to be waiting")
    return procs


def test_redis_cut_while_clients_wait_and_workers_work(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    proxy = TcpProxy(redis_server.port)
    try:
        fleet = make_fleet(
            workers=1,
            concurrency=1,
            lock_ttl=3,
            visibility_timeout=300,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        )
        procs = _three_waiting(fleet, tmp_path, compile_seconds=2.0, timeout=60)
        proxy.cut()
        time.sleep(2)
        proxy.restore()
        finish_all(procs, fleet)
        assert b"n: " in same_css(tmp_path, 3)
        _serves_a_new_bundle(fleet, tmp_path, ".after { outage: over; }\n")
    finally:
        proxy.close()


def test_redis_dies_silently_while_clients_wait_and_workers_work(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    """Every connection to the service's Redis dies without a FIN or RST mid-compile (a
    dropped NAT entry: the proxy drops what it gets, new connections get through). The
    clients' capped re-check, the holder's lock renewal and the worker's ack get no
    reply: each fails after SCSSQ_REDIS_REPLY_TIMEOUT and goes again on a new connection
    instead of waiting forever, and every client gets the CSS before its --timeout."""
    proxy = TcpProxy(redis_server.port)
    try:
        fleet = make_fleet(
            workers=1,
            concurrency=1,
            lock_ttl=2,
            visibility_timeout=300,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_reply_timeout=2,
            broker_health_check_interval=2,  # the broker (the same Redis) dies with it
        )
        procs = _three_waiting(fleet, tmp_path, compile_seconds=8.0, timeout=60)
        assert proxy.freeze() >= 4  # the clients' and the worker's connections
        # Mid-compile: the first compile still runs, nothing is published yet.
        assert len(fleet.engine_runs()) == 1
        assert not fleet.redis.keys(f"{fleet.prefix}:result:*")
        finish_all(procs, fleet, timeout=80)
        assert b"n: " in same_css(tmp_path, 3)
        # The holder could not renew its lock, so it dropped its compile unpublished; the
        # clients' re-enqueue compiled it once more, and the other tasks found the result.
        assert "abandoned: lock of" in fleet.full_logs()
        assert len(fleet.engine_runs()) == 2
    finally:
        proxy.close()


def test_an_ack_that_failed_twice_is_sent_again_once_redis_is_back(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    """Redis is unreachable from mid-compile until the worker's ack has failed on a new
    connection too (a partition: every connection silently dead, new ones as well).
    kombu logs "Couldn't ack" and leaves the message pending in the consumer, which at
    prefetch 1 then consumed nothing more, with a fresh heartbeat: every client timed
    out. The worker sends the ack again on its timer (compiler_tasks/worker/acks.py), so once
    Redis is back it consumes: the clients' re-enqueue compiles, and the next submit."""
    proxy = TcpProxy(redis_server.port)
    try:
        fleet = make_fleet(
            workers=0,
            lock_ttl=2,
            visibility_timeout=300,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_reply_timeout=2,
            broker_health_check_interval=2,
        )
        # Celery's worker-heartbeat event (every 2 s) would block the event loop in a
        # reconnection from the outage's first seconds, and the ack queued behind it would
        # run only once Redis is back. With it, an ack fails only when the outage starts
        # less than 2 s before it: it narrows the window, it does not close it.
        fleet.start_worker(concurrency=1, extra_args=("--without-heartbeat",))
        # Long enough that the holder finds its lock unrenewable (a TTL into the outage)
        # and drops the compile before it ends: the task then ends while Redis is away.
        procs = _three_waiting(fleet, tmp_path, compile_seconds=10.0, timeout=90)
        proxy.partition()
        wait_for(lambda: "Couldn't ack" in fleet.full_logs(), 60, "the ack to fail twice")
        proxy.heal()
        finish_all(procs, fleet, timeout=80)
        assert b"n: " in same_css(tmp_path, 3)
        _serves_a_new_bundle(fleet, tmp_path, ".after { partition: healed; }\n")
        assert re.search(r"task message \S+ settled", fleet.full_logs())
    finally:
        proxy.close()


def _subscribers(fleet: Fleet) -> int:
    channels = fleet.redis.pubsub_channels(f"{fleet.prefix}:done:*")
    return sum(n for _, n in fleet.redis.pubsub_numsub(*channels)) if channels else 0


def test_redis_down_until_the_timeout_exits_3(make_fleet, redis_server, tmp_path: Path) -> None:
    proxy = TcpProxy(redis_server.port)
    try:
        fleet = make_fleet(
            workers=1,
            concurrency=1,
            lock_ttl=3,
            visibility_timeout=300,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        )
        src = make_src(tmp_path, {"main.scss": slow_scss(3.0)})
        proc = fleet.spawn(
            "submit", HASH1, *submit_args(src, tmp_path / "o"), "--timeout", "8", cwd=tmp_path
        )
        engine_parent(fleet, 1)
        proxy.cut()
        started = time.monotonic()
        code = proc.wait(30)
        _, err = proc.communicate()
        assert code == 3, err
        assert time.monotonic() - started < 10
        assert "Redis" in err
    finally:
        proxy.close()


def test_store_down_during_upload(
    make_fleet, s3_endpoint: str, s3_store_url: str, tmp_path: Path, monkeypatch
) -> None:
    port = int(s3_endpoint.rsplit(":", 1)[1])
    proxy = TcpProxy(port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    try:
        fleet = make_fleet(workers=1, concurrency=1, store=s3_store_url, task_retries=2)
        src = make_src(tmp_path, {"main.scss": slow_scss(1.0)})
        proc = fleet.spawn(
            "submit", HASH1, *submit_args(src, tmp_path / "o"), "--timeout", "60", cwd=tmp_path
        )
        engine_parent(fleet, 1)
        proxy.cut()
        code = proc.wait(60)
        _, err = proc.communicate()
        assert code == 3, err
        assert "store" in err and s3_store_url.split("/")[2] in err
        assert fleet.redis.keys(f"{fleet.prefix}:result:*") == []  # nothing cached
        assert len(fleet.engine_runs()) == 3  # first try + 2 retries
        proxy.restore()
        again = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("compiled")
    finally:
        proxy.close()


def test_sigterm_mid_compile_finishes_the_task(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1, concurrency=1)
    src = make_src(tmp_path, {"main.scss": slow_scss(2.0)})
    proc = fleet.spawn("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path)
    engine_parent(fleet, 1)
    worker = fleet.workers[0]
    worker.send_signal(signal.SIGTERM)  # what Kubernetes sends on scale-down
    assert proc.wait(60) == 0, proc.communicate()
    assert worker.wait(30) == 0
    assert len(fleet.engine_runs()) == 1


def test_engine_crashing_every_time_is_reported_not_redelivered(make_fleet, tmp_path: Path) -> None:
    # A real crash, not a limit hit (a memory limit is the sources' outcome: exit 1, see
    # tests/test_correctness.py): each engine child is SIGKILLed as its compile starts.
    fleet = make_fleet(workers=1, concurrency=1, task_retries=1)
    src = make_src(tmp_path, {"main.scss": slow_scss(20.0)})
    proc = fleet.spawn(
        "submit", HASH1, *submit_args(src, tmp_path / "o"), "--timeout", "60", cwd=tmp_path
    )
    for run in (1, 2):
        wait_for(lambda run=run: len(fleet.engine_runs()) >= run, 30, f"compile #{run}")
        os.kill(int(fleet.engine_runs()[run - 1].split()[0]), signal.SIGKILL)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "engine" in err
    assert len(fleet.engine_runs()) == 2  # one try + one retry, then given up
    assert fleet.redis.keys(f"{fleet.prefix}:result:*") == []
    _serves_a_new_bundle(fleet, tmp_path, ".a { b: c; }\n")


def test_client_killed_mid_wait_leaves_a_cached_result(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1, concurrency=1)
    src = make_src(tmp_path, {"main.scss": slow_scss(1.5)})
    proc = fleet.spawn("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path)
    engine_parent(fleet, 1)
    proc.kill()
    proc.wait()
    wait_for(lambda: bool(fleet.redis.keys(f"{fleet.prefix}:result:*")), 30, "the result")
    assert fleet.redis.keys(f"{fleet.prefix}:lock:*") == []
    again = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("cached")


CONTENDER = r"""
import sys, time, redis
from compiler_tasks.keys import RedisKeys
from compiler_tasks.coordination.lock import Lock, Outcome
url, prefix, log = sys.argv[1], sys.argv[2], sys.argv[3]
client = redis.Redis.from_url(url)
lines = []
give_up = time.time() + 60
while len(lines) < 3 and time.time() < give_up:
    lock = Lock(client, RedisKeys(prefix), "f" * 64, 5000)
    if not lock.acquire():
        time.sleep(0.001)
        continue
    start = time.time()
    time.sleep(0.002)
    end = time.time()
    lines.append(f"{start!r} {end!r}")
    assert lock.release() is Outcome.DONE
with open(log, "w") as fh:
    fh.write("\n".join(lines))
"""


def test_lock_ownership_under_contention(redis_server, tmp_path: Path) -> None:
    """50 processes contend for one key, each until it held the lock 3 times;
    each logs its hold intervals (start after acquire returned, end before release
    is sent); no two intervals overlap."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, redis_server.url, "contend", str(tmp_path / f"l{i}")]
        )
        for i in range(50)
    ]
    for p in procs:
        assert p.wait(90) == 0
    intervals = sorted(
        tuple(map(float, line.split()))
        for i in range(50)
        for line in (tmp_path / f"l{i}").read_text().splitlines()
    )
    assert len(intervals) == 150
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start


def test_fallback_local_when_the_fleet_is_unreachable(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=0)
    src = make_src(tmp_path, {"main.scss": '@import "a";\n', "_a.scss": ".a { b: c; }\n"})
    env = {"SCSSQ_REDIS_URL": "redis://127.0.0.1:1/0"}
    off = fleet.scssq(
        "submit", HASH1, *submit_args(src, tmp_path / "o"), "--timeout", "3", cwd=tmp_path, env=env
    )
    assert off.returncode == 3
    on = fleet.scssq(
        "submit",
        HASH1,
        *submit_args(src, tmp_path / "o"),
        "--fallback",
        "local",
        "--timeout",
        "3",
        cwd=tmp_path,
        env=env,
    )
    assert on.returncode == 0, on.stderr
    assert "compiling locally" in on.stderr
    assert on.stdout.startswith("local")
    assert (tmp_path / "o" / "main.css").read_text().startswith(".a")
    (src / "_a.scss").write_text(".a { b: $nope; }\n")
    broken = fleet.scssq(
        "submit",
        HASH1,
        *submit_args(src, tmp_path / "o"),
        "--fallback",
        "local",
        "--timeout",
        "3",
        cwd=tmp_path,
        env=env,
    )
    assert broken.returncode == 1 and "_a.scss:1:" in broken.stderr
    # The same engine as asked: a module-system bundle compiles locally with dart-sass.
    (src / "_a.scss").write_text('@use "sass:math";\n.a { b: math.div(4, 2); }\n')
    dart = fleet.scssq(
        "submit",
        HASH1,
        *submit_args(src, tmp_path / "o"),
        "--engine",
        "dart-sass",
        "--fallback",
        "local",
        "--timeout",
        "3",
        cwd=tmp_path,
        env=env,
    )
    assert dart.returncode == 0, dart.stderr
    assert "b: 2;" in (tmp_path / "o" / "main.css").read_text()


def test_a_message_that_kills_its_worker_is_not_redelivered_forever(
    make_fleet, tmp_path: Path
) -> None:
    """Every compile of this key gets its pool process killed (as a segfaulting engine
    would): after SCSSQ_MAX_DELIVERIES attempts the submitter is told, and the worker
    goes on serving other work."""
    fleet = make_fleet(workers=1, concurrency=1, lock_ttl=1, max_deliveries=2)
    src = make_src(tmp_path, {"main.scss": slow_scss(3.0)})
    queued = fleet.scssq(
        "submit", HASH1, *submit_args(src, tmp_path / "o"), "--no-wait", "--json", cwd=tmp_path
    )
    key = json.loads(queued.stdout)["key"]
    pubsub = fleet.redis.pubsub()
    pubsub.subscribe(f"{fleet.prefix}:done:{key}")
    killed = 0
    verdict = None
    deadline = time.monotonic() + 90
    while verdict is None and time.monotonic() < deadline:
        if len(fleet.engine_runs()) > killed:
            os.kill(engine_parent(fleet, killed + 1), signal.SIGKILL)
            killed += 1
        msg = pubsub.get_message(timeout=0.1)
        if msg and msg["type"] == "message" and json.loads(msg["data"])["type"] == "done":
            verdict = json.loads(msg["data"])["result"]
    assert verdict is not None, fleet.logs()
    assert verdict["status"] == "failed" and "killed its worker 2 times" in verdict["message"]
    assert killed == 2 and len(fleet.engine_runs()) == 2
    assert fleet.redis.keys(f"{fleet.prefix}:result:*") == []
    # When the delivery counter gives up first, the pool process killed just before still
    # "holds" the lock: nobody renews it, so it is gone within its TTL (1 s here), and no
    # one else may delete it (invariant 3).
    wait_until(lambda: fleet.redis.keys(f"{fleet.prefix}:lock:*") == [], timeout=3)
    _serves_a_new_bundle(fleet, tmp_path, ".a { b: c; }\n")


def test_persistent_redis_restarted_while_clients_wait(tmp_path: Path) -> None:
    """Redis as production runs it (append-only file, fsync always) is restarted while
    three clients wait and a worker compiles: the lock and queue survive on disk, the
    clients reconnect and resubscribe, the worker reconnects; everyone gets the CSS."""
    server = RedisServer(extra=("--appendonly", "yes", "--appendfsync", "always"))
    fleet = Fleet(server.url, tmp_path, lock_ttl=6, visibility_timeout=300)
    try:
        fleet.start_worker(1)
        src = make_src(tmp_path, {"main.scss": slow_scss(3.0)})
        procs = spawn_many(fleet, 3, src, tmp_path, "--timeout", "90")
        engine_parent(fleet, 1)
        wait_for(lambda: _subscribers(fleet) >= 3, 30, "all 3 clients to be waiting")
        server.restart(down_for=2.0)
        finish_all(procs, fleet)
        assert b"n: " in same_css(tmp_path, 3)
        # The lock survived on disk; a second compile happens only if Redis was still
        # away when the holder completed (an infrastructure retry).
        assert len(fleet.engine_runs()) <= 2
        _serves_a_new_bundle(fleet, tmp_path, ".after { restart: ok; }\n")
    finally:
        fleet.stop()
        server.stop()


#: Run with the fleet's environment: one long-lived Client submits, waits for a line on
#: stdin (the test kills every Redis connection silently meanwhile), then submits again.
TWO_SUBMITS = """
import sys, time
from pathlib import Path
from cli.client import Client, submit
from cli.config import SubmitConfig
from compiler_tasks.keys import CompileOptions
from compiler_tasks.settings import Settings

src, out = Path(sys.argv[1]), Path(sys.argv[2])
client = Client(Settings.from_env())
config = SubmitConfig(src=src, out=out, project="demo", options=CompileOptions(("main.scss",)))
print(submit(client, config, "a" * 40, timeout=30).outcome, flush=True)
sys.stdin.readline()
(src / "main.scss").write_text(".after { drop: silent; }\\n")
started = time.monotonic()
second = submit(client, config, "b" * 40, timeout=40)
print(second.outcome, (out / "main.css").read_text().split()[0], round(time.monotonic() - started))
"""


def test_a_long_lived_client_and_a_worker_replace_silently_dead_connections(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    """Every Redis connection (service and broker) dies without a FIN or RST between two
    submits of one long-lived client (a dropped NAT entry; the proxy drops what it gets,
    both ends keep an open socket; new connections get through). The second submit's
    first command on the client's dead connection fails after SCSSQ_REDIS_REPLY_TIMEOUT
    (every connection of the client has that limit) and the submit starts over on a new
    one, instead of waiting forever; the worker's overdue BRPOP is dropped after
    SCSSQ_BROKER_HEALTH_CHECK_INTERVAL and it consumes again. Without the reply timeout
    this client never returns."""
    proxy = TcpProxy(redis_server.port)
    try:
        fleet = make_fleet(
            workers=1,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_reply_timeout=3,
            broker_health_check_interval=2,
            lock_ttl=2,  # the client's capped wait re-enqueues a message the dead BRPOP ate
        )
        src = tmp_path / "src"
        src.mkdir()
        (src / "main.scss").write_text(".before { drop: none; }\n")
        client = subprocess.Popen(
            [sys.executable, "-c", TWO_SUBMITS, str(src), str(tmp_path / "out")],
            env=fleet.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert client.stdout is not None and client.stdin is not None
            assert client.stdout.readline().split() == ["compiled"]
            assert proxy.freeze() >= 2  # the client's and the worker's connections
            client.stdin.write("go\n")
            client.stdin.flush()
            out, err = client.communicate(timeout=60)
        finally:
            client.kill()
        assert out.split()[:2] == ["compiled", ".after"], err + fleet.logs()
        assert "dropping stale connection" in fleet.full_logs()
    finally:
        proxy.close()
