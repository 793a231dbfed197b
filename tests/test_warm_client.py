"""The in-process client API held by a long-lived process, on a real fleet: a file it
read before is read again, and what it no longer reads (the commit mapping its compile
task announced)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compiler_tasks.observability import stats
from tests.support.fleet import wait_until
from tests.test_fleet import make_src, slow_scss, submit_args
from tests.test_sources import _tree

pytestmark = pytest.mark.integration

#: Run with the fleet's environment: two submits through one warm in-process Client, the
#: second after a same-size rewrite of an imported file whose old mtime is put back.
WARM_CLIENT = """
import os, sys
from pathlib import Path
from cli.client import Client, submit
from cli.config import SubmitConfig
from compiler_tasks.keys import CompileOptions
from compiler_tasks.settings import Settings

src, out = Path(sys.argv[1]), Path(sys.argv[2])
client = Client(Settings.from_env())
options = CompileOptions(entries=("main.scss",))
config = SubmitConfig(src=src, out=out, project="demo", options=options)
first = submit(client, config, "a" * 40, timeout=60)
print(first.outcome, (out / "main.css").read_text().split()[-2])
colors = src / "lib" / "_colors.scss"
before = os.stat(colors)
colors.write_text("$c: #00aa00;\\n")
os.utime(colors, ns=(before.st_atime_ns, before.st_mtime_ns))
second = submit(client, config, "b" * 40, timeout=60)
print(second.outcome, (out / "main.css").read_text().split()[-2])
"""


def _run_client(fleet, script: str, *args: object) -> subprocess.CompletedProcess[str]:
    """``script`` in a new interpreter with the fleet's environment (its own Client)."""
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_warm_client_compiles_a_changed_file_it_has_read_before(
    make_fleet, tmp_path: Path
) -> None:
    fleet = make_fleet(workers=1)
    src = tmp_path / "src"
    _tree(src)
    proc = _run_client(fleet, WARM_CLIENT, src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr + fleet.logs()
    assert proc.stdout.split("\n")[:2] == ["compiled #aa0000;", "compiled #00aa00;"]
    assert len(fleet.engine_runs()) == 2


#: One compile through a named in-process Client (its connections are found by name).
NAMED_SUBMIT = """
import sys
import time
from pathlib import Path
from cli.client import Client, submit
from cli.config import SubmitConfig
from compiler_tasks.keys import CompileOptions
from compiler_tasks.settings import Settings

src, out, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
client = Client(Settings.from_env(), name=name)
options = CompileOptions(entries=("main.scss",))
config = SubmitConfig(src=src, out=out, project="demo", options=options)
res = submit(client, config, "c" * 40, timeout=60)
print(res.outcome, res.conflict)
"""


def test_a_compiled_submit_learns_its_commit_mapping_from_the_announcement(
    make_fleet, redis_server, tmp_path: Path
) -> None:
    """The compile task maps the commit before it compiles and says so when it is done:
    the submitter reads the mapping once (before subscribing), not again after the wake."""
    fleet = make_fleet(workers=1)
    src = tmp_path / "src"
    _tree(src)
    name = "submitter-" + secrets.token_hex(3)
    lines: list[str] = []
    with redis_server.client(decode_responses=True).monitor() as monitor:
        proc = _run_client(fleet, NAMED_SUBMIT, src, tmp_path / "out", name)
        sentinel = "sentinel-" + name
        fleet.redis.get(sentinel)
        while not any(sentinel in line for line in lines):
            lines.append(str(monitor.connection.read_response()))
    assert proc.returncode == 0 and proc.stdout == "compiled None\n", proc.stderr + fleet.logs()
    addrs = {
        m.group(1)
        for line in lines
        if f'"CLIENT" "SETNAME" "{name}"' in line
        for m in [re.search(r"\[\d+ ([^\]]+)\]", line)]
        if m
    }
    mine = [line.split("] ", 1)[1] for line in lines if any(f" {a}]" in line for a in addrs)]
    mapping_reads = [c for c in mine if c.startswith('"HGET"') and ":commit:" in c]
    assert len(mapping_reads) == 1, mine
    assert fleet.scssq("status", "c" * 40, "--project", "demo", cwd=src).returncode == 0


def test_a_waiter_of_another_commit_still_gets_its_commit_mapped(
    make_fleet, tmp_path: Path
) -> None:
    """The announcement names the compiling submit's commit only: a submit of the same
    sources under another commit that shares the compile still has its commit mapped."""
    fleet = make_fleet(workers=1)
    src = make_src(tmp_path, {"main.scss": slow_scss(1.5)})
    first = fleet.spawn("submit", "a" * 40, *submit_args(src, tmp_path / "o1"), cwd=tmp_path)
    wait_for_lock = time.monotonic() + 20
    while not fleet.redis.keys(f"{fleet.prefix}:lock:*") and time.monotonic() < wait_for_lock:
        time.sleep(0.05)
    second = fleet.scssq("submit", "b" * 40, *submit_args(src, tmp_path / "o2"), cwd=tmp_path)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0 and out.startswith("compiled"), err
    assert second.returncode == 0 and second.stdout.startswith("shared"), second.stderr
    for commit in ("a" * 40, "b" * 40):  # b: by the scssq.record task its submit sent
        wait_until(
            lambda c=commit: (
                fleet.scssq("status", c, "--project", "demo", cwd=tmp_path).returncode == 0
            ),
            timeout=20,
        )
    assert len(fleet.engine_runs()) == 1


#: A compile, then hits through one warm Client.
WARM_HITS = """
import sys
from pathlib import Path
from cli.client import Client, submit
from cli.config import SubmitConfig
from compiler_tasks.keys import CompileOptions
from compiler_tasks.settings import Settings

src, out = Path(sys.argv[1]), Path(sys.argv[2])
client = Client(Settings.from_env())
options = CompileOptions(entries=("main.scss",))
config = SubmitConfig(src=src, out=out, project="demo", options=options)
outcomes = [submit(client, config, "a" * 40, timeout=60).outcome]
for _ in range(4):
    outcomes.append(submit(client, config, "a" * 40, timeout=60).outcome)
print(" ".join(outcomes))
client.close()
"""


def test_a_warm_clients_hits_are_all_counted(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1)
    src = tmp_path / "src"
    _tree(src)
    proc = _run_client(fleet, WARM_HITS, src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr + fleet.logs()
    assert proc.stdout.strip() == "compiled cached cached cached cached"
    css = (tmp_path / "out" / "main.css").read_text()
    assert "#aa0000" in css
    counts = stats.read(fleet.redis, fleet.prefix)  # the last hit's count went at close
    assert counts == {"hit": 4, "miss": 1, "shared": 0}
