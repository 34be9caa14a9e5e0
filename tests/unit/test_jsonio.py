"""overlayctl.util.jsonio must read and write exactly what the json module does."""

from __future__ import annotations

import json
import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overlayctl.util import jsonio

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@given(_values)
def test_dumps_matches_json_module(value: object) -> None:
    assert jsonio.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert jsonio.canonical(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


@given(_values)
def test_loads_round_trips(value: object) -> None:
    text = json.dumps(value, indent=2)
    assert jsonio.loads(text) == json.loads(text)
    assert jsonio.loads(f"  {jsonio.dumps(value)}\n".encode()) == value


def test_loads_constants() -> None:
    assert math.isnan(jsonio.loads("NaN"))
    assert jsonio.loads("[-Infinity]") == [float("-inf")]


@pytest.mark.parametrize("text", ["", "{", "[1,]", "1 2", '{"a":1} x', "nul"])
def test_loads_rejects_what_json_rejects(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonio.loads(text)


def test_dumps_rejects_unserialisable() -> None:
    with pytest.raises(TypeError, match="set"):
        jsonio.dumps({"a": {1, 2}})
    # A failure leaves nothing behind for the next call.
    assert jsonio.dumps({"a": [1]}) == '{"a":[1]}'


def test_surrogates_round_trip_as_escapes() -> None:
    # How Python hands over argv, env values and file names that are not UTF-8.
    value = {"Env": ["X=" + b"\xff\xfe".decode("utf-8", "surrogateescape")], "é": "a\\b\udc80"}
    text = jsonio.dumps(value)
    assert "\\udcff\\udcfe" in text and "é" in text
    text.encode()  # valid UTF-8: what the catalog can store
    assert jsonio.loads(text) == value == json.loads(text)
    assert jsonio.loads(jsonio.canonical(value)) == value
    assert os.fsencode(jsonio.loads(text)["Env"][0]) == b"X=\xff\xfe"
