"""Client actions (realtime/actions.py): registration, pipelining, reserved types, override()."""

from __future__ import annotations

from typing import Any

import pytest

from realtime import actions
from realtime.actions import ActionContext


async def _echo(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
    return {"echo": frame.get("n")}


def test_registered_actions_are_found_and_pipelining_is_remembered() -> None:
    actions.register_action("test.echo", _echo, pipelined=True)
    assert actions.get_action("test.echo") is _echo
    assert actions.is_pipelined("test.echo")
    actions.register_action("test.echo", _echo)  # re-registering replaces
    assert not actions.is_pipelined("test.echo")
    assert actions.get_action("test.nothing") is None


def test_the_decorator_registers() -> None:
    @actions.action("test.decorated", pipelined=True)
    async def handler(ctx: ActionContext, frame: dict[str, Any]) -> dict[str, Any]:
        return {}

    assert actions.get_action("test.decorated") is handler
    assert actions.is_pipelined("test.decorated")


@pytest.mark.parametrize("type_", sorted(actions.RESERVED_TYPES))
def test_core_frame_types_cannot_be_taken(type_: str) -> None:
    with pytest.raises(ValueError, match="core frame type"):
        actions.register_action(type_, _echo)


def test_override_restores_actions() -> None:
    handler = actions.get_action("chat.send")
    assert handler is not None
    with actions.override():
        actions.unregister_action("chat.send")
        actions.register_action("test.temporary", _echo, pipelined=True)
        assert actions.get_action("chat.send") is None
    assert actions.get_action("chat.send") is handler
    assert actions.get_action("test.temporary") is None
    assert not actions.is_pipelined("test.temporary")
