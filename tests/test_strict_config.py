"""Strict configuration: a wrong type in scssq.toml, a bad client variable and a bad
worker variable each stop the command with one message naming where the value came
from (file and key, or variable), the value and the fix."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.config import resolve
from compiler_tasks.errors import UsageError

BIN = Path(sys.executable).parent
HASH = "a" * 40
#: Nothing listens there: each error must come before any connection.
NOWHERE = {"SCSSQ_REDIS_URL": "redis://127.0.0.1:1/0"}


def _site(tmp_path: Path, toml: str = "") -> Path:
    (tmp_path / "main.scss").write_text(".a { b: c; }\n")
    if toml:
        (tmp_path / "scssq.toml").write_text(toml)
    return tmp_path


@pytest.mark.parametrize(
    "line,expected",
    [
        ('source_map = "false"', "is not a boolean"),
        ("project = 42", "is not a project name"),
        ('project = "no spaces"', "is not a project name"),
        ("timeout = true", "is not a number of seconds, at least 0.1"),
        ("timeout = 0", "is not a number of seconds, at least 0.1"),
        ("timeout = 0.05", "is not a number of seconds, at least 0.1"),
        ('style = "nested"', 'is not one of "expanded" or "compressed"'),
        ('engine = "node-sass"', "is not one of"),
        ("load_paths = [1]", "is not a list of strings"),
        ("quiet_deps = 1", "is not a boolean"),
        ("src = false", "is not a string"),
        ("exclude = {a = 1}", "is not a list of strings"),
    ],
)
def test_a_wrong_type_in_scssq_toml_names_file_key_value_and_type(
    tmp_path: Path, line: str, expected: str
) -> None:
    _site(tmp_path, f'entries = ["main.scss"]\n{line}\n')
    key, value = (part.strip() for part in line.split("=", 1))
    with pytest.raises(UsageError) as info:
        resolve(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'scssq.toml'}: {key} = "), message
    assert expected in message and "write e.g." in message
    if not value.startswith("{"):
        assert value.replace('"', "") in message


def _scssq(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCSSQ_")}
    return subprocess.run(
        [str(BIN / "scssq"), *args],
        cwd=cwd,
        env={**clean, **NOWHERE, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_refuses_a_string_for_a_boolean_before_anything_is_sent(tmp_path: Path) -> None:
    _site(tmp_path, 'entries = ["main.scss"]\nsource_map = "false"\n')
    done = _scssq("submit", HASH, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert 'scssq.toml: source_map = "false" is not a boolean' in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command,variable,value",
    [
        ("submit", "SCSSQ_SUBMIT_TIMEOUT", "1m"),
        ("submit", "SCSSQ_FALLBACK", "sometimes"),
        ("submit", "SCSSQ_PROJECT", "no spaces"),
        ("status", "SCSSQ_PROJECT", "no spaces"),
        ("fetch", "SCSSQ_PROJECT", "no spaces"),
    ],
)
def test_a_bad_client_variable_is_named_not_a_flag(
    tmp_path: Path, command: str, variable: str, value: str
) -> None:
    _site(tmp_path, 'entries = ["main.scss"]\n')
    done = _scssq(command, HASH, cwd=tmp_path, **{variable: value})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{variable}={value!r}" in done.stderr, done.stderr
    assert "Invalid value for" not in done.stderr
    assert not re.search(r"--[a-z]", done.stderr), done.stderr  # no flag the user did not type


def test_a_worker_with_a_bad_variable_exits_with_one_line(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCSSQ_")}
    done = subprocess.run(
        [str(BIN / "celery"), "-A", "compiler_tasks", "worker", "--without-mingle"],
        cwd=tmp_path,
        env={**clean, **NOWHERE, "SCSSQ_LOCK_TTL": "soon"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "scssq worker cannot start: SCSSQ_LOCK_TTL='soon' is not a number; "
        "set it to e.g. 30 or unset it"
    ], done.stderr
