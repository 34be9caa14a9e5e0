"""Detach keys: Docker's --detach-keys syntax, its config file, and the
filter that holds back a sequence until it is complete or broken."""

from __future__ import annotations

import json

import pytest

from overlayctl.errors import InvalidArgumentError
from overlayctl.util import detachkeys
from overlayctl.util.detachkeys import EscapeFilter, parse, resolve


@pytest.mark.parametrize(
    "keys, expected",
    [
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("ctrl-a,a", b"\x01a"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x00\x1b\x1c\x1d\x1e\x1f"),
        ("ctrl-z", b"\x1a"),
        ("e,x,i,t,@,@,@", b"exit@@@"),
        ("DEL", b"\x7f"),
        ("Q", b"Q"),
    ],
)
def test_parse_dockers_syntax(keys, expected):
    assert parse(keys) == expected


@pytest.mark.parametrize("keys", ["shift-a", "ctrl-A", "ctrl-1", "ctrl-", "ctrl-aa", "a,,b", "é"])
def test_parse_refuses_what_docker_refuses(keys):
    with pytest.raises(InvalidArgumentError) as caught:
        parse(keys)
    assert caught.value.message.startswith(f"invalid detach keys ({keys}): Unknown character: '")
    assert caught.value.exit_code == 125


def test_resolve_option_then_config_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert resolve(None) == detachkeys.DEFAULT  # no file
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}, "detachKeys": "ctrl-x,q"}))
    assert resolve(None) == b"\x18q"
    assert resolve("ctrl-a,a") == b"\x01a"  # the option wins
    (tmp_path / "config.json").write_text("not json")
    assert resolve(None) == detachkeys.DEFAULT
    (tmp_path / "config.json").write_text(json.dumps({"detachKeys": "nope"}))
    with pytest.raises(InvalidArgumentError, match="config.json"):
        resolve(None)


def test_home_docker_config_without_docker_config(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"detachKeys": "ctrl-e"}))
    assert resolve(None) == b"\x05"


def feed_all(keys: bytes, chunks: list[bytes]) -> tuple[bytes, bool]:
    escape = EscapeFilter(keys)
    out = b""
    for chunk in chunks:
        passed, detached = escape.feed(chunk)
        out += passed
        if detached:
            return out, True
    return out, False


@pytest.mark.parametrize(
    "chunks, passed, detached",
    [
        ([b"ls\r"], b"ls\r", False),
        ([b"\x10", b"\x11"], b"", True),  # one key per read, as typed
        ([b"abc\x10\x11def"], b"abc", True),  # what follows the sequence is dropped
        ([b"\x10", b"x"], b"\x10x", False),  # broken: passed on as typed
        ([b"\x10"], b"", False),  # held back while it may still complete
        ([b"\x10", b"\x10", b"\x11"], b"\x10", True),  # the breaking key begins it again
        ([b"a\x10", b"\x10x"], b"a\x10\x10x", False),
    ],
)
def test_filter_default_keys(chunks, passed, detached):
    assert feed_all(detachkeys.DEFAULT, chunks) == (passed, detached)


def test_filter_custom_and_disabled():
    assert feed_all(b"\x01a", [b"\x01", b"b"]) == (b"\x01b", False)
    assert feed_all(b"\x01a", [b"x\x01", b"a"]) == (b"x", True)
    assert feed_all(b"q", [b"abq"]) == (b"ab", True)
    assert feed_all(b"", [b"\x10\x11"]) == (b"\x10\x11", False)
