"""The settings object: defaults and clear errors for bad variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler_tasks.errors import ConfigError
from compiler_tasks.settings import DEFAULT_LOCK_TTL, Settings, redact_url


def test_defaults_need_no_cloud() -> None:
    s = Settings.from_env({})
    assert s.redis_url.startswith("redis://127.0.0.1")
    assert s.store_url.startswith("file:///")
    assert s.lock_ttl == DEFAULT_LOCK_TTL
    assert s.broker_url == s.redis_url


@pytest.mark.parametrize(
    "name,value",
    [
        ("SCSSQ_LOCK_TTL", "soon"),
        ("SCSSQ_LOCK_TTL", "-1"),
        ("SCSSQ_LOCK_TTL", "nan"),
        ("SCSSQ_RESULT_TTL", "1.5"),
        ("SCSSQ_REDIS_URL", "http://x"),
        ("SCSSQ_STORE", "relative/dir"),
        ("SCSSQ_STORE", "ftp://x"),
        ("SCSSQ_PREFIX", "a b"),
        ("SCSSQ_ENGINE", "node-sass"),
        ("SCSSQ_WORK_DIR", "relative/scratch"),
        ("SCSSQ_REDIS_REPLY_TIMEOUT", "1"),  # below the BRPOP's own 1 s timeout + margin
        ("SCSSQ_REDIS_REPLY_TIMEOUT", "never"),
        ("SCSSQ_BROKER_HEALTH_CHECK_INTERVAL", "0"),  # would turn kombu's checks off
        ("SCSSQ_BROKER_HEALTH_CHECK_INTERVAL", "2.5"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value)


def test_visibility_timeout_must_exceed_longest_task() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SCSSQ_COMPILE_TIMEOUT": "600", "SCSSQ_VISIBILITY_TIMEOUT": "300"})
    assert "SCSSQ_VISIBILITY_TIMEOUT" in str(info.value)


def test_a_missing_work_dir_names_the_variable_at_worker_start(tmp_path: Path) -> None:
    missing = Settings.from_env({"SCSSQ_WORK_DIR": str(tmp_path / "gone")})  # clients: fine
    with pytest.raises(ConfigError, match=r"SCSSQ_WORK_DIR=.*not a writable directory"):
        missing.check_work_dir()
    Settings.from_env({"SCSSQ_WORK_DIR": str(tmp_path)}).check_work_dir()
    Settings.from_env({}).check_work_dir()


def test_passwords_are_redacted() -> None:
    url = "rediss://user:s3cret@redis.example:6380/0"
    assert "s3cret" not in redact_url(url)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SCSSQ_REDIS_URL": "http://user:s3cret@host"})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("SCSSQ_LOCK_TTL", "soon", "SCSSQ_LOCK_TTL='soon' is not a number; set it to e.g. 30"),
        ("SCSSQ_LOCK_TTL", "0.1", "SCSSQ_LOCK_TTL='0.1' must be a finite number >= 0.3"),
        ("SCSSQ_RESULT_TTL", "1.5", "SCSSQ_RESULT_TTL='1.5' is not an integer; set it to e.g."),
        ("SCSSQ_MAX_OUTPUT_BYTES", "10", "SCSSQ_MAX_OUTPUT_BYTES='10' must be an integer >= 1024"),
        ("SCSSQ_TRACES_SAMPLE_RATE", "2", "SCSSQ_TRACES_SAMPLE_RATE=2 must be a rate from 0 to 1"),
        ("SCSSQ_BROKER_URL", "http://x", "SCSSQ_BROKER_URL='http://x' is not a Redis URL; use"),
        ("SCSSQ_STORE", "ftp://x", "SCSSQ_STORE='ftp://x' is not a store URL; use file:///"),
        ("SCSSQ_QUEUE", "a b", "SCSSQ_QUEUE='a b': use 1-64 letters, digits"),
        ("SCSSQ_ENGINE", "node-sass", "SCSSQ_ENGINE='node-sass': choose one of libsass, dart-sass"),
        ("SCSSQ_WORK_DIR", "rel", "SCSSQ_WORK_DIR='rel': give an absolute path"),
        ("SCSSQ_REDIS_CA_FILE", "/nonexistent.pem", "is not a readable file; point it at a PEM"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_the_fix(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert message in str(info.value)


def test_unset_and_empty_variables_take_the_defaults() -> None:
    assert Settings.from_env({"SCSSQ_LOCK_TTL": " ", "SCSSQ_QUEUE": ""}) == Settings.from_env({})
    s = Settings.from_env({"SCSSQ_REDIS_URL": "redis://r:6379/1"})
    assert s.broker_url == "redis://r:6379/1", "the broker is Redis unless told otherwise"
    assert s.store_url == "file://" + str(Path("~/.local/share/scssq/store").expanduser())
    defaults = Settings()
    for name in ("prefix", "queue", "lock_ttl", "engine_memory_mb", "traces_sample_rate"):
        assert getattr(s, name) == getattr(defaults, name)
