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
