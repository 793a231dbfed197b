"""Flower, a real process over HTTP, beside a real fleet; and the Grafana dashboard's
queries checked against real scrapes of a worker and of Flower.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import CELERY, Fleet
from tests.support.procs import free_port, stop_group, wait_for
from tests.test_fleet import HASH1, make_src, submit_args
from tests.test_metrics import scrape

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "scssq.json"
USER, PASSWORD = "ops", "s3cret-" + secrets.token_hex(4)


class Flower:
    """One ``celery flower`` process with basic auth, on a free loopback port."""

    def __init__(self, fleet: Fleet, app: str = "compiler_tasks.app") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = fleet.tmp / "flower.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    CELERY,
                    "-A",
                    app,
                    "flower",
                    "--address=127.0.0.1",
                    f"--port={self.port}",
                    f"--basic-auth={USER}:{PASSWORD}",
                ],
                env=fleet.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=fleet.tmp,
            )
        wait_for(lambda: self.status("/healthcheck", auth=None) == 200, 30, "Flower to answer")

    def request(self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD)) -> Any:
        req = urllib.request.Request(self.base + path)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        return urllib.request.urlopen(req, timeout=10)

    def status(self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD)) -> int:
        try:
            with self.request(path, auth) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0

    def json(self, path: str) -> Any:
        with self.request(path) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        stop_group(self.proc, grace=5)  # type: ignore[arg-type]


@pytest.fixture
def flower_fleet(make_fleet: Any) -> Iterator[tuple[Fleet, Flower, int]]:
    metrics_port = free_port()
    fleet = make_fleet(workers=1, metrics_port=metrics_port)
    flower = Flower(fleet)
    try:
        yield fleet, flower, metrics_port
    finally:
        flower.stop()


def test_flower_shows_workers_and_compiles_behind_basic_auth(
    flower_fleet: tuple[Fleet, Flower, int], tmp_path: Path
) -> None:
    fleet, flower, _ = flower_fleet
    token = "tok" + secrets.token_hex(8)
    src = make_src(tmp_path, {"main.scss": f"/* {token} */ .{token} {{ a: b; }}\n"})
    proc = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    key = json.loads(proc.stdout)["key"]

    workers = flower.json("/api/workers?refresh=1")
    ours = [name for name in workers if name.startswith(f"w1-{fleet.prefix}@")]
    assert len(ours) == 1, workers.keys()
    assert "scssq.compile" in str(workers[ours[0]].get("registered"))

    def compile_task() -> dict[str, Any] | None:
        tasks = flower.json("/api/tasks?taskname=scssq.compile")
        done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        return done[0] if done else None

    task = wait_for_value(compile_task, 20, "the compile in Flower's task list")
    assert task["name"] == "scssq.compile"
    assert task["worker"].startswith(f"w1-{fleet.prefix}@")
    assert task["result"] == "'compiled'"
    shown = f"{task['args']} {task['kwargs']}"
    assert HASH1[:12] in shown and key[:12] in shown and "main.scss" in shown
    assert len(shown) < 300 and token not in shown  # small, and never the sources

    def flower_events() -> float:
        text = urllib.request.urlopen(flower.base + "/metrics", timeout=10).read().decode()
        found = re.findall(
            r'^flower_events_total\{(?=[^}]*task="scssq\.compile")(?=[^}]*type="task-succeeded")'
            r"[^}]*\} (\S+)$",
            text,
            re.M,
        )
        return sum(float(v) for v in found)

    assert wait_for_value(flower_events, 10, "flower_events_total of the compile") >= 1

    for path in ("/api/workers", "/api/tasks", "/tasks", "/"):
        assert flower.status(path, auth=None) == 401, path
        assert flower.status(path, auth=(USER, "wrong")) == 401, path
    assert flower.status("/api/tasks") == 200


def test_dashboard_queries_only_metrics_that_exist(
    flower_fleet: tuple[Fleet, Flower, int], tmp_path: Path
) -> None:
    fleet, flower, metrics_port = flower_fleet
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queried = {m for e in exprs for m in re.findall(r"\b((?:scssq|flower)_[a-z_]+)\b", e)}
    assert {m for m in queried if m.startswith("scssq_")} and {
        m for m in queried if m.startswith("flower_")
    }
    src = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"})
    proc = fleet.scssq("submit", HASH1, *submit_args(src, tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    def flower_names() -> set[str]:
        text = urllib.request.urlopen(flower.base + "/metrics", timeout=10).read().decode()
        return set(re.findall(r"^([a-z_]+)(?:\{| )", text, re.M))

    # Flower fills its series from events: the compile's, and the workers' heartbeats.
    wanted = {m for m in queried if m.startswith("flower_")}
    wait_for(lambda: wanted <= flower_names(), 20, f"Flower to export {wanted}")
    exported = {name for name, _ in scrape(metrics_port)} | flower_names()
    assert queried - exported == set()


def wait_for_value(check: Any, timeout: float, what: str) -> Any:
    found: list[Any] = []

    def probe() -> bool:
        value = check()
        if value:
            found.append(value)
        return bool(value)

    wait_for(probe, timeout, what, interval=0.2)
    return found[-1]
