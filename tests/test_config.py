"""Submit settings from flags and ``scssq.toml``: each path is checked where it enters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.config import resolve
from compiler_tasks.errors import UsageError

#: The flags of a submit of scss/main.scss (see _site).
FLAGS = {"src": "scss", "entries": ("main.scss",), "project": "site"}


def _site(tmp_path: Path) -> Path:
    (tmp_path / "scss").mkdir()
    (tmp_path / "scss" / "main.scss").write_text(".a { b: c; }\n")
    return tmp_path


def test_out_naming_a_file_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    (_site(tmp_path) / "dist").write_text("a file, not a folder")
    with pytest.raises(UsageError, match=r"--out '.*dist' is not a directory; pass the folder"):
        resolve(tmp_path, {**FLAGS, "out": "dist"})


def test_out_not_made_yet_is_fine(tmp_path: Path) -> None:
    config = resolve(_site(tmp_path), {**FLAGS, "out": "dist/css"})
    assert config.out == (tmp_path / "dist" / "css").resolve()


def test_src_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    (_site(tmp_path) / "file.scss").write_text("")
    with pytest.raises(UsageError, match=r"--src '.*file\.scss' is not a directory"):
        resolve(tmp_path, {**FLAGS, "src": "file.scss"})


@pytest.mark.parametrize("command", ["submit", "fetch"])
def test_the_cli_refuses_such_an_out_before_reaching_redis(tmp_path: Path, command: str) -> None:
    (_site(tmp_path) / "dist").write_text("a file, not a folder")
    scssq = Path(sys.executable).parent / "scssq"
    args = [str(scssq), command, "1234567" * 5 + "12345", "--out", "dist"]
    if command == "submit":
        args += ["--src", "scss", "--entry", "main.scss"]
    env = {**os.environ, "SCSSQ_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--out '" in done.stderr and "dist' is not a directory" in done.stderr


def test_out_under_a_file_is_refused(tmp_path: Path) -> None:
    (_site(tmp_path) / "dist").write_text("a file, not a folder")
    with pytest.raises(UsageError, match=r"--out '.*dist/css' cannot be used: Not a directory"):
        resolve(tmp_path, {**FLAGS, "out": "dist/css"})
