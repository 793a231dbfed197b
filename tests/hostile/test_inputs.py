"""Hostile and garbage sources through the whole fleet: real ``scssq`` processes, real workers.

What a user checks: the exit code, stdout, stderr and the CSS written. A
secret planted on the worker's machine never shows up in any of them (nor in
the worker's log), whatever an import tries; resources are bounded with
messages naming the limit; garbage gets a message naming the value.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from compiler_tasks.settings import ENGINES
from tests.support.fleet import Fleet
from tests.test_fleet import make_src, submit_args

pytestmark = pytest.mark.integration


def run_all(
    fleet: Fleet,
    jobs: dict[Any, tuple[Path, list[str]]],
    envs: dict[Any, dict[str, str]] | None = None,
) -> dict[Any, tuple[int, str, str]]:
    """Run ``scssq`` once per job, all at once; job -> (exit code, stdout, stderr)."""
    procs = {
        name: fleet.spawn(*args, cwd=cwd, env=(envs or {}).get(name))
        for name, (cwd, args) in jobs.items()
    }
    done = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        done[name] = (proc.returncode, out, err)
    return done


def commit(i: int) -> str:
    return f"{i:040x}"


def test_imports_never_reveal_the_workers_files(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=0)
    worker_tmp = tmp_path / "worker-tmp"  # per-task directories live here
    worker_tmp.mkdir()
    fleet.start_worker(2, extra_env={"TMPDIR": str(worker_tmp)})
    token = secrets.token_hex(16)
    outside = tmp_path / "worker-files"
    outside.mkdir()
    # Valid Sass (its CSS would carry the token) and invalid Sass (an error would quote it).
    (outside / "_secret.scss").write_text(f".leak {{ content: '{token}'; }}\n")
    (outside / "plain.scss").write_text(f"{token} {token}\n")
    escape = "../" * 12 + str(outside).lstrip("/")
    hostile = {
        "absolute": f'@import "{outside}/secret";',
        "absolute, invalid Sass": f'@import "{outside}/plain";',
        "dot-dot escape": f'@import "{escape}/secret";',
        "dot-dot escape, invalid Sass": f'@import "{escape}/plain";',
        "file url": f'@import "file://{outside}/_secret.scss";',
        "use absolute": f'@use "{outside}/secret";',
        "use dot-dot": f'@use "{escape}/secret";',
    }
    inside = make_src(
        tmp_path,
        {
            "app/main.scss": '@import "../shared/vars";\n.a { color: $c; }\n',
            "shared/_vars.scss": "$c: red;",
        },
        "legit",
    )
    jobs, envs = {}, {}
    for engine in ENGINES:  # every engine the fleet runs
        for i, (name, source) in enumerate(hostile.items()):
            src = make_src(tmp_path, {"main.scss": source + "\n.a { b: c; }\n"}, f"{engine}{i}")
            out = tmp_path / f"out-{engine}{i}"
            jobs[engine, name] = (tmp_path, ["submit", commit(i), *submit_args(src, out)])
        legit = submit_args(inside, tmp_path / f"out-{engine}", entry="app/main.scss")
        jobs[engine, "inside"] = (tmp_path, ["submit", commit(99), *legit])
        envs.update({job: {"SCSSQ_ENGINE": engine} for job in jobs if job[0] == engine})
    results = run_all(fleet, jobs, envs)

    for engine in ENGINES:
        code, out, err = results[engine, "inside"]
        assert code == 0, f"{engine}: {out}\n{err}\n{fleet.logs()}"
        css = (tmp_path / f"out-{engine}" / "app" / "main.css").read_text()
        assert "color: red" in css, engine
        for i, name in enumerate(hostile):
            code, out, err = results[engine, name]
            shown = f"{engine}, {name}: exit {code}\n{out}\n{err}"
            assert code == 1, shown
            assert "main.scss" in err, shown
            written = tmp_path / f"out-{engine}{i}"
            css = "".join(p.read_text() for p in written.rglob("*")) if written.exists() else ""
            for text in (out, err, css):
                assert token not in text, shown
                assert str(worker_tmp) not in text and "scssq-" not in text, shown
    assert token not in fleet.logs()


def test_resource_abuse_is_bounded(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1, concurrency=2, max_output_bytes=4096, max_message_bytes=512)
    sources = {
        "recursion": "@function f($n) { @return f($n + 1); }\n.a { b: f(1); }\n",
        "mixin recursion": "@mixin m { .x { @include m; } }\n@include m;\n",
        "huge output": "@for $i from 1 through 2000 { .c#{$i} { width: $i * 1px; } }\n",
        "warning flood": "@for $i from 1 through 500 { @warn 'warning #{$i}'; }\n.a { b: c; }\n",
        "huge error": f"@error '{'x' * 20000}';\n",
    }
    jobs = {}
    for i, (name, source) in enumerate(sources.items()):
        src = make_src(tmp_path, {"main.scss": source}, f"src{i}")
        jobs[name] = (tmp_path, ["submit", commit(i), *submit_args(src, tmp_path / f"out{i}")])
    results = run_all(fleet, jobs)

    for name in ("recursion", "mixin recursion"):
        code, out, err = results[name]
        assert code == 1, (name, out, err)
        assert "main.scss:1:" in err and "stack" in err.lower(), (name, err)
    code, out, err = results["huge output"]
    assert code == 1 and "SCSSQ_MAX_OUTPUT_BYTES" in err and "4096" in err, err
    code, out, err = results["warning flood"]
    assert code == 0, err
    assert "truncated at 512 bytes (SCSSQ_MAX_MESSAGE_BYTES)" in err
    assert len(err.encode()) < 2048
    code, out, err = results["huge error"]
    assert code == 1 and "SCSSQ_MAX_MESSAGE_BYTES" in err and len(err.encode()) < 2048, err
    # The worker is still free: a normal compile goes through.
    good = make_src(tmp_path, {"main.scss": ".ok { b: c; }\n"}, "good")
    args = submit_args(good, tmp_path / "good-out")
    proc = fleet.scssq("submit", commit(99), *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_garbage_gets_a_message_naming_it(make_fleet, tmp_path: Path) -> None:
    fleet = make_fleet(workers=1, inline_bundle_max=2048)
    # A client configured for bigger inline bundles than the worker accepts: refused, at once.
    big = make_src(tmp_path, {"main.scss": f"/* {secrets.token_hex(4096)} */\n"}, "big")
    bad_utf8 = make_src(tmp_path, {"main.scss": '@import "latin1";\n.a { b: $x; }\n'}, "utf8")
    (bad_utf8 / "_latin1.scss").write_bytes(b"$x: 'caf\xe9 cr\xe8me';\n")
    empty = make_src(tmp_path, {"README.md": "no styles here"}, "empty")
    good = make_src(tmp_path, {"main.scss": ".a { b: c; }\n"}, "good")
    hostile_hashes = ["../x", "abc 1234", "abc1234\nflushall", "*", "abc1234*", "f" * 10_000]
    jobs = {
        "non-utf8": (tmp_path, ["submit", commit(1), *submit_args(bad_utf8, tmp_path / "o1")]),
        "empty": (tmp_path, ["submit", commit(2), *submit_args(empty, tmp_path / "o2")]),
        "inline": (tmp_path, ["submit", commit(4), *submit_args(big, tmp_path / "o4")]),
        "project": (
            tmp_path,
            ["submit", commit(3), "--src", str(good), "--entry", "main.scss", "--project", "../x"],
        ),
    }
    for i, value in enumerate(hostile_hashes):
        jobs[f"submit {i}"] = (tmp_path, ["submit", value, *submit_args(good, tmp_path / "o")])
        if i in (0, len(hostile_hashes) - 1):
            jobs[f"status {i}"] = (tmp_path, ["status", value, "--project", "demo"])
            jobs[f"fetch {i}"] = (tmp_path, ["fetch", value, "--project", "demo", "--out", "f"])
    results = run_all(fleet, jobs, {"inline": {"SCSSQ_INLINE_BUNDLE_MAX": str(1 << 20)}})

    code, _out, err = results.pop("inline")
    assert code == 2 and "the worker refused the bundle" in err, err
    assert "inline bundle is larger than SCSSQ_INLINE_BUNDLE_MAX" in err, err
    code, _out, err = results.pop("non-utf8")
    assert code == 1 and "_latin1.scss:1:" in err and "UTF-8" in err, err
    code, _out, err = results.pop("empty")
    assert code == 2 and "no .scss or .sass file" in err, err
    code, _out, err = results.pop("project")
    assert code == 2 and "'../x'" in err, err
    for name, (code, _out, err) in results.items():
        value = hostile_hashes[int(name.split()[1])]
        assert code == 2, (name, err)
        assert repr(value[:40])[1:-1] in err, (name, err)
        assert len(err) < 1000, f"{name}: the value was echoed whole"
    assert len(fleet.engine_runs()) == 1  # the non-UTF-8 bundle; no hostile value got further
    assert len(fleet.redis.keys(f"{fleet.prefix}:commit:*")) == 1
    assert fleet.redis.keys(f"{fleet.prefix}:lock:*") == []
