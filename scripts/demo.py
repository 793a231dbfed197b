"""Run a real compile through a local fleet, on defaults that need no cloud account.

Starts a private redis-server on a free port and two Celery worker processes,
stores artifacts in ``.scssq/store`` of the repository, submits the example
bundle in ``examples/site`` twice (compiled, then cached), prints where the CSS
is, and stops everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLE = ROOT / "examples" / "site"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    state = ROOT / ".scssq"
    state.mkdir(exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "SCSSQ_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "SCSSQ_STORE": f"file://{state / 'store'}",
        "PYTHONUNBUFFERED": "1",
    }
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("redis-server is missing: run `make setup` (apt-get install redis-server)")
        return 2
    procs = [
        start(
            [
                redis_bin,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
            ],
            env,
            state / "redis.log",
        )
    ]
    try:
        time.sleep(0.3)
        for i in (1, 2):
            procs.append(
                start(
                    [
                        str(BIN / "celery"),
                        "-A",
                        "compiler_tasks.app",
                        "worker",
                        "--loglevel=INFO",
                        "--concurrency=1",
                        "-n",
                        f"demo{i}@%h",
                        "--without-mingle",
                        "--without-gossip",
                    ],
                    env,
                    state / f"worker{i}.log",
                )
            )
        scssq = str(BIN / "scssq")
        deadline = time.monotonic() + 60
        while subprocess.run([scssq, "health"], env=env, capture_output=True).returncode:
            if time.monotonic() > deadline:
                print("the fleet did not become healthy; see .scssq/*.log")
                return 3
            time.sleep(0.5)
        print("$ scssq health", flush=True)
        subprocess.run([scssq, "health"], env=env)
        code = 0
        for _ in range(2):
            print("$ scssq submit   (in examples/site, settings from scssq.toml)", flush=True)
            code = subprocess.run([scssq, "submit"], env=env, cwd=EXAMPLE).returncode
            if code:
                return code
        css = EXAMPLE / "out" / "scss" / "main.css"
        print(f"\nThe CSS is in {css.relative_to(ROOT)} ({css.stat().st_size} bytes):\n")
        print(css.read_text())
        return code
    finally:
        for proc in reversed(procs):
            stop(proc)


if __name__ == "__main__":
    sys.exit(main())
