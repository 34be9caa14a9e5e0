"""The capability table runtime.capabilities keeps, now that it calls
prctl/capget/capset itself: the same names and numbers as python-prctl's."""

from __future__ import annotations

import pytest

from overlayctl.runtime import capabilities


def test_names_and_numbers_are_python_prctls():
    _prctl = pytest.importorskip("_prctl")
    flags = {"CAP_EFFECTIVE", "CAP_INHERITABLE", "CAP_PERMITTED", "CAP_LAST_CAP"}
    theirs = {n[4:].lower(): getattr(_prctl, n) for n in dir(_prctl) if n.startswith("CAP_") and n not in flags}
    assert {name: capabilities._numbers((name,)).pop() for name in capabilities.known_capabilities()} == theirs
    assert capabilities.LAST_CAP == _prctl.CAP_LAST_CAP


def test_every_default_capability_is_known():
    assert set(capabilities.DEFAULT_CAPABILITIES) <= set(capabilities.known_capabilities())
    assert capabilities.resolve_capabilities(["ALL"], []) == capabilities.known_capabilities()
