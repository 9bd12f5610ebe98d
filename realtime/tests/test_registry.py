"""Stream kinds (realtime/registry.py): name rules, longest-prefix resolution, override()."""

from __future__ import annotations

import pytest

from realtime import registry
from realtime.protocol import ErrorCode, ProtocolError


def _anyone(user: registry.AnyUser, key: str) -> None:
    return None


def test_the_longest_registered_kind_wins() -> None:
    registry.register_stream("test:a", authorize=_anyone)
    registry.register_stream("test:a:b", authorize=_anyone)
    kind, key = registry.resolve("test:a:b:7")
    assert (kind.name, key) == ("test:a:b", "7")
    kind, key = registry.resolve("test:a:9")
    assert (kind.name, key) == ("test:a", "9")
    assert registry.resolve("test:a")[1] == ""


@pytest.mark.parametrize("name", ["", "a b", "a:", ":a", "a\n", "x" * 91, 42, None])
def test_malformed_names_are_invalid(name: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        registry.resolve(name)
    assert caught.value.code == ErrorCode.INVALID


def test_an_unknown_kind_is_unknown_stream() -> None:
    with pytest.raises(ProtocolError) as caught:
        registry.resolve("nobody:here")
    assert caught.value.code == ErrorCode.UNKNOWN_STREAM


def test_override_restores_the_registry() -> None:
    before = registry.kinds()
    with registry.override():
        registry.register_stream("test:temporary", authorize=_anyone)
        registry.unregister_stream("test:open")
        assert "test:temporary" in registry.kinds()
        assert "test:open" not in registry.kinds()
    assert registry.kinds() == before
    assert registry.resolve("test:open:1")[0].name == "test:open"
