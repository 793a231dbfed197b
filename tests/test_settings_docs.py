"""Settings are declared once: docs/configuration.md and .env.example follow the table;
the client's options (flags and scssq.toml keys) follow theirs, in cli/fields.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cli import fields
from cli.config import load_file
from cli.main import main as cli_group
from compiler_tasks import settings_docs
from compiler_tasks.errors import ConfigError
from compiler_tasks.settings import CLIENT_SETTINGS, SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
CHECK = [sys.executable, "-m", "compiler_tasks.settings_docs", "--check"]


def _checkout_copy(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    shutil.copy(DOCS, tmp_path / "docs" / "configuration.md")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env.example")
    return tmp_path


def _documented_defaults() -> dict[str, str]:
    """variable -> default cell of the tables in docs/configuration.md."""
    rows = re.findall(r"^\| `(SCSSQ_[A-Z_]+)` \| ([^|]+) \|", DOCS.read_text(), re.M)
    return {name: default.strip() for name, default in rows}


def test_configuration_md_and_env_example_agree_with_the_table() -> None:
    done = subprocess.run([*CHECK, "--root", str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_fails_on_a_stale_doc_and_the_command_mends_it(tmp_path: Path) -> None:
    root = _checkout_copy(tmp_path)
    doc = root / "docs" / "configuration.md"
    doc.write_text(doc.read_text().replace("| `30` s |", "| `45` s |", 1))
    done = subprocess.run([*CHECK, "--root", str(root)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "docs/configuration.md disagrees" in done.stdout, done.stdout
    assert "python -m compiler_tasks.settings_docs" in done.stdout
    assert settings_docs.main(["--root", str(root)]) == 0
    assert doc.read_text() == DOCS.read_text()


def test_the_check_fails_on_a_stale_env_example_comment(tmp_path: Path) -> None:
    root = _checkout_copy(tmp_path)
    env = root / ".env.example"
    env.write_text(env.read_text().replace("[default: 2048 MiB]", "[default: 512 MiB]"))
    assert settings_docs.stale(root) == [Path(".env.example")]


@pytest.mark.parametrize(
    "line,complaint",
    [
        ("SCSSQ_LOCK_TIME=30", "variables scssq does not read: ['SCSSQ_LOCK_TIME']"),
        ("SCSSQ_LOCK_TTL=soon", "SCSSQ_LOCK_TTL='soon' is not a number"),
    ],
)
def test_env_example_may_only_set_known_settings_to_usable_values(
    tmp_path: Path, line: str, complaint: str
) -> None:
    root = _checkout_copy(tmp_path)
    env = root / ".env.example"
    env.write_text(env.read_text().replace("SCSSQ_LOCK_TTL=30", line))
    with pytest.raises(ConfigError, match=re.escape(complaint)):
        settings_docs.stale(root)


def test_every_variable_is_documented_with_the_default_the_code_uses() -> None:
    documented = _documented_defaults()
    defaults = Settings.from_env({})
    assert set(documented) == {spec.env for _, spec in SETTINGS} | {
        spec.env for spec in CLIENT_SETTINGS
    }
    assert documented["SCSSQ_LOCK_TTL"] == f"`{defaults.lock_ttl:g}` s"
    assert documented["SCSSQ_MAX_OUTPUT_BYTES"] == f"`{defaults.max_output_bytes}` (32 MiB)"
    assert documented["SCSSQ_PREFIX"] == f"`{defaults.prefix}`"
    for name, spec in SETTINGS:
        value = getattr(defaults, name)
        if not spec.shown and isinstance(value, int | float):
            shown = f"`{value:g}`" if isinstance(value, float) else f"`{value}`"
            assert documented[spec.env].startswith(shown), spec.env


def test_every_scssq_variable_the_code_mentions_is_documented() -> None:
    mentioned: set[str] = set()
    for folder in ("compiler_tasks", "cli"):
        for path in (ROOT / folder).rglob("*.py"):
            mentioned.update(re.findall(r"\bSCSSQ_[A-Z_]*[A-Z]\b", path.read_text()))
    mentioned.discard("SCSSQ_ENGINE_TRACE")  # test-only: tests count compiles with it
    assert mentioned - set(_documented_defaults()) == set()


def test_the_client_variables_are_read_through_their_rows_not_by_click() -> None:
    """click would name a flag the user did not type (``Invalid value for '--timeout'``);
    each client variable is read by ``cli.config.env_value`` through its row instead."""
    for command in cli_group.commands.values():
        for param in command.params:
            assert not (isinstance(param, click.Option) and param.envvar), (command, param)
    read: set[str] = set()
    for path in (ROOT / "cli").rglob("*.py"):
        read |= set(re.findall(r'env_value\("(SCSSQ_[A-Z_]+)"\)', path.read_text()))
    assert read == {spec.env for spec in CLIENT_SETTINGS}


def test_configuration_md_lists_every_option_as_cli_fields_declares_it() -> None:
    text = DOCS.read_text()
    assert fields.render_docs(text) == text, "docs/configuration.md is stale: python -m cli.fields"


def test_a_stale_options_table_is_caught_and_the_command_mends_it(tmp_path: Path) -> None:
    root = _checkout_copy(tmp_path)
    doc = root / "docs" / "configuration.md"
    boolean = "| a boolean (true or false, unquoted) |"
    doc.write_text(doc.read_text().replace(f"{boolean} off |", f"{boolean} on |", 1))
    assert fields.render_docs(doc.read_text()) != doc.read_text()
    done = subprocess.run([sys.executable, "-m", "cli.fields"], cwd=root, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert doc.read_text() == DOCS.read_text()


def test_the_examples_are_values_scssq_toml_accepts(tmp_path: Path) -> None:
    """The fix each error suggests, the README's scssq.toml and the example site's."""
    assert [o.name for o in fields.OPTIONS if not o.kind.check(o.example)] == []
    readme_toml = re.search(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert readme_toml
    for text in (readme_toml[1], (ROOT / "examples" / "site" / "scssq.toml").read_text()):
        (tmp_path / "scssq.toml").write_text(text)
        assert load_file(tmp_path)
