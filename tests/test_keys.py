"""Validation of user values and the key scheme (pure, fast)."""

from __future__ import annotations

import pytest

from compiler_tasks.errors import InvalidInput
from compiler_tasks.keys import (
    CompileOptions,
    RedisKeys,
    compile_key,
    content_digest,
    normalize_relpath,
    validate_commit,
    validate_project,
)


@pytest.mark.parametrize("value", ["abc1234", "A" * 40, "0" * 64, " deadbeef\n"])
def test_commit_hashes_accepted_and_normalized(value: str) -> None:
    assert validate_commit(value) == value.strip().lower()


@pytest.mark.parametrize(
    "value", ["../x", "abc 123", "abc\n123", "*", "g" * 40, "abc12", "a" * 65, "x" * 10_000, ""]
)
def test_hostile_commit_values_refused_naming_the_value(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_commit(value)
    assert "git rev-parse HEAD" in str(info.value)
    assert len(str(info.value)) < 300  # a 10 KB value is shortened, not echoed whole


@pytest.mark.parametrize("value", ["../etc", "a b", "a:b", "", "-lead", "x" * 101, "a/b"])
def test_bad_project_names_refused(value: str) -> None:
    with pytest.raises(InvalidInput):
        validate_project(value)


@pytest.mark.parametrize(
    "value,expected", [("./scss//main.scss", "scss/main.scss"), ("main.scss", "main.scss")]
)
def test_relpaths_normalized(value: str, expected: str) -> None:
    assert normalize_relpath(value) == expected


@pytest.mark.parametrize("value", ["/etc/passwd", "../x.scss", "a/../../b.scss", "a\x00b"])
def test_escaping_relpaths_refused(value: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_relpath(value)


def test_digest_is_order_independent_and_content_sensitive() -> None:
    a = content_digest([("a.scss", "1" * 64), ("b.scss", "2" * 64)])
    assert a == content_digest([("b.scss", "2" * 64), ("a.scss", "1" * 64)])
    assert a != content_digest([("a.scss", "1" * 64), ("b.scss", "3" * 64)])
    assert a != content_digest([("a.scss", "2" * 64), ("b.scss", "1" * 64)])


def test_compile_key_covers_options_and_engine_version() -> None:
    digest = "d" * 64
    base = CompileOptions(entries=("main.scss",))
    key = compile_key(digest, base, "libsass 1")
    assert len(key) == 64
    assert key == compile_key(digest, CompileOptions(entries=("main.scss",)), "libsass 1")
    assert key != compile_key(digest, base, "libsass 2")
    assert key != compile_key(
        digest, CompileOptions(entries=("main.scss",), style="compressed"), "libsass 1"
    )
    assert key != compile_key("e" * 64, base, "libsass 1")
    assert key != compile_key(
        digest, CompileOptions(entries=("main.scss",), source_map=True), "libsass 1"
    )


def test_options_validation() -> None:
    with pytest.raises(InvalidInput):
        CompileOptions(entries=())
    with pytest.raises(InvalidInput):
        CompileOptions(entries=("main.css",))
    with pytest.raises(InvalidInput):
        CompileOptions(entries=("main.scss",), style="nested")
    with pytest.raises(InvalidInput):
        CompileOptions(entries=("main.scss",), engine="gcc")


def test_redis_keys_refuse_unvalidated_parts() -> None:
    keys = RedisKeys("scssq")
    assert keys.lock("a" * 64) == "scssq:lock:" + "a" * 64
    with pytest.raises(InvalidInput):
        keys.lock("*")
    with pytest.raises(InvalidInput):
        keys.commit("proj", "abc\n*")
