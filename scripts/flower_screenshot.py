"""Take a headless Chromium screenshot of Flower's task list after a demo run.

    python scripts/flower_screenshot.py [--out .scssq/flower-tasks.png]

starts a private fleet (redis-server on a free port, one worker, a local
store in a temporary folder) and Flower with basic auth, submits
``examples/site`` twice (compiled, then cached) and a broken copy of it (a
compile error), then screenshots Flower's ``/tasks`` page and stops everything
it started. To photograph a Flower that already runs instead::

    FLOWER_BASIC_AUTH=user:password python scripts/flower_screenshot.py --url http://127.0.0.1:5555

Chromium (Debian: ``apt-get install chromium``) runs headless with a fresh
profile and no background traffic. The credentials never appear on its
command line: it talks to a loopback proxy started here that adds the
``Authorization`` header. The image is not committed (see ``.gitignore``).
Exit codes: 0 written, 2 usage (no Chromium, bad credentials), 3 the run failed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLE = ROOT / "examples" / "site"
DEFAULT_OUT = ROOT / ".scssq" / "flower-tasks.png"
#: The task list shows what each compile was (kwargs: project, commit, key, entries) and its
#: outcome (result: compiled, cached, compile-error, ...).
TASK_COLUMNS = "--tasks_columns=name,state,kwargs,result,received,runtime,worker"
#: Headers that belong to one connection, not to the request the proxy forwards.
_HOP_HEADERS = {
    "host",
    "authorization",
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
    "proxy-connection",
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,900",
    # Let the page's scripts fetch and draw the task table before the shot.
    "--virtual-time-budget=10000",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except OSError:
        return 0, b""


@contextmanager
def auth_proxy(target: str, auth: str) -> Iterator[str]:
    """A loopback HTTP proxy to ``target`` that adds the basic-auth header; yields its URL."""

    class Forward(BaseHTTPRequestHandler):
        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            req = urllib.request.Request(
                target.rstrip("/") + self.path, data=body, method=self.command
            )
            for name, value in self.headers.items():
                if name.lower() not in _HOP_HEADERS:
                    req.add_header(name, value)
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    status, headers, data = resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as e:
                status, headers, data = e.code, e.headers, e.read()
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in _HOP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_HEAD = forward  # http.server's naming

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def screenshot(flower: str, auth: str, out: Path, browser: str) -> None:
    """Photograph ``flower``'s task list into ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with auth_proxy(flower, auth) as local, tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={out}",
                f"{local}/tasks",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot to {out}")


@contextmanager
def demo_flower(tmp: Path, auth: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A private fleet with Flower; yields Flower's URL and the clients' environment."""
    redis_port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCSSQ_", "SENTRY_"))}
    env.update(
        {
            "SCSSQ_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "SCSSQ_STORE": f"file://{tmp / 'store'}",
            "SCSSQ_HEARTBEAT_FILE": str(tmp / "heartbeat"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise RuntimeError("redis-server is missing: run `make setup`")
    celery = str(BIN / "celery")
    redis_cmd = [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    worker_cmd = [celery, "-A", "compiler_tasks.app", "worker", "--concurrency=2", "-n", "demo1@%h"]
    flower_cmd = [celery, "-A", "compiler_tasks.app", "flower", "--address=127.0.0.1"]
    commands = [
        [*redis_cmd, "--appendonly", "no", "--maxmemory-policy", "noeviction"],
        [*worker_cmd, "--loglevel=INFO", "--without-mingle", "--without-gossip"],
        [*flower_cmd, f"--port={flower_port}", f"--basic-auth={auth}", TASK_COLUMNS],
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, cmd in enumerate(commands):
            with open(tmp / f"process{i}.log", "ab") as log:
                procs.append(
                    subprocess.Popen(
                        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
            if i == 0:
                time.sleep(0.5)
        flower = f"http://127.0.0.1:{flower_port}"
        scssq = str(BIN / "scssq")
        healthy = [scssq, "health"]
        wait(
            lambda: subprocess.run(healthy, env=env, capture_output=True).returncode == 0,
            60,
            "a worker",
        )
        wait(lambda: get(flower + "/healthcheck")[0] == 200, 60, "Flower")
        yield flower, env
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def demo_run(env: dict[str, str], tmp: Path, flower: str, auth: str) -> None:
    """Submit the example twice (compiled, cached) and a broken copy (compile error)."""
    scssq = str(BIN / "scssq")
    for _ in range(2):
        subprocess.run([scssq, "submit", "--out", str(tmp / "out")], env=env, cwd=EXAMPLE)
    broken = tmp / "broken"
    shutil.copytree(EXAMPLE, broken, ignore=shutil.ignore_patterns("out"))
    with open(broken / "scss" / "main.scss", "a") as fh:
        fh.write("\n.oops { color: $undefined-colour; }\n")
    subprocess.run([scssq, "submit", "b" * 40, "--out", str(tmp / "out2")], env=env, cwd=broken)

    def seen() -> bool:
        status, body = get(flower + "/api/tasks?taskname=scssq.compile", auth)
        tasks = json.loads(body) if status == 200 else {}
        return sum(t.get("state") == "SUCCESS" for t in tasks.values()) >= 2

    wait(seen, 30, "Flower to list the compiles")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"[{DEFAULT_OUT}]")
    parser.add_argument("--url", help="an already running Flower (default: run a demo fleet)")
    parser.add_argument("--user", help="basic-auth user [FLOWER_BASIC_AUTH]")
    parser.add_argument("--password", help="basic-auth password [FLOWER_BASIC_AUTH]")
    args = parser.parse_args(argv)
    browser = chromium()
    if browser is None:
        print("Chromium is missing: apt-get install chromium", file=sys.stderr)
        return 2
    if args.user and args.password:
        auth = f"{args.user}:{args.password}"
    elif args.url:
        auth = os.environ.get("FLOWER_BASIC_AUTH", "")
        if ":" not in auth:
            print("give --user/--password or FLOWER_BASIC_AUTH=user:password", file=sys.stderr)
            return 2
    else:
        auth = "demo:" + base64.b32encode(os.urandom(10)).decode().lower()
    out = args.out.resolve()
    try:
        if args.url:
            screenshot(args.url, auth, out, browser)
        else:
            with (
                tempfile.TemporaryDirectory(prefix="scssq-flower-") as tmp,
                demo_flower(Path(tmp), auth) as (flower, env),
            ):
                demo_run(env, Path(tmp), flower, auth)
                screenshot(flower, auth, out, browser)
    except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as e:
        print(f"flower_screenshot: {e}", file=sys.stderr)
        return 3
    print(f"Flower's task list: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
