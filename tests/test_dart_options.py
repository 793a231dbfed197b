"""Choosing dart-sass and its options: compile options, keys, scssq.toml, flags, settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import config as cfg
from cli.main import main
from compiler_tasks.errors import ConfigError, InvalidInput, UsageError
from compiler_tasks.keys import CompileOptions, compile_key
from compiler_tasks.settings import DEFAULT_DART_MAX_COMPILES, Settings

DIGEST = "d" * 64


def test_new_options_join_the_key_only_when_set() -> None:
    base = CompileOptions(entries=("main.scss",))
    assert set(base.as_dict()) == {"entries", "load_paths", "style", "source_map", "engine"}
    dart = CompileOptions(entries=("main.scss",), engine="dart-sass")
    assert compile_key(DIGEST, dart, "v") != compile_key(DIGEST, base, "v")
    quiet = CompileOptions(entries=("main.scss",), engine="dart-sass", quiet_deps=True)
    silenced = CompileOptions(
        entries=("main.scss",), engine="dart-sass", silence_deprecations=("import", "import")
    )
    keys = {compile_key(DIGEST, o, "v") for o in (dart, quiet, silenced)}
    assert len(keys) == 3
    assert silenced.silence_deprecations == ("import",)
    assert CompileOptions.from_dict(silenced.as_dict()) == silenced
    assert CompileOptions.from_dict(quiet.as_dict()) == quiet
    assert CompileOptions.from_dict(base.as_dict()) == base  # old messages still read


def test_new_options_are_validated() -> None:
    with pytest.raises(InvalidInput, match="--engine dart-sass"):
        CompileOptions(entries=("main.scss",), quiet_deps=True)
    with pytest.raises(InvalidInput, match="not a Dart Sass deprecation id"):
        CompileOptions(entries=("a.scss",), engine="dart-sass", silence_deprecations=("Bad Id",))


def test_scssq_toml_and_flags_choose_the_engine_and_options(tmp_path: Path) -> None:
    (tmp_path / "main.scss").write_text(".a { b: c; }\n")
    (tmp_path / "scssq.toml").write_text(
        'project = "p"\nentries = ["main.scss"]\nengine = "dart-sass"\n'
        'silence_deprecations = ["import"]\nquiet_deps = true\n'
    )
    conf = cfg.resolve(tmp_path)
    assert conf.options.engine == "dart-sass" and conf.options.quiet_deps
    assert conf.options.silence_deprecations == ("import",)
    flags = {"silence_deprecations": ("global-builtin",), "quiet_deps": False}
    conf = cfg.resolve(tmp_path, {**flags, "engine": "dart-sass"})
    assert conf.options.silence_deprecations == ("global-builtin",) and not conf.options.quiet_deps
    with pytest.raises(UsageError, match="--engine dart-sass"):
        cfg.resolve(tmp_path, {"engine": "libsass"})


def test_engine_flag_is_offered_and_checked(tmp_path: Path) -> None:
    runner = CliRunner()
    text = runner.invoke(main, ["submit", "--help"]).output
    assert "--engine [libsass|dart-sass]" in text and "--silence-deprecation" in text
    assert "--quiet-deps" in text
    assert "--engine [libsass|dart-sass]" in runner.invoke(main, ["fetch", "--help"]).output
    bad = runner.invoke(main, ["submit", "a" * 40, "--entry", "x.scss", "--engine", "ruby"])
    assert bad.exit_code == 2


def test_settings_accept_dart_sass() -> None:
    settings = Settings.from_env({"SCSSQ_ENGINE": "dart-sass", "SCSSQ_DART_MAX_COMPILES": "7"})
    assert settings.engine == "dart-sass" and settings.dart_max_compiles == 7
    assert Settings.from_env({}).dart_max_compiles == DEFAULT_DART_MAX_COMPILES
    with pytest.raises(ConfigError, match="SCSSQ_DART_MAX_COMPILES"):
        Settings.from_env({"SCSSQ_DART_MAX_COMPILES": "0"})
