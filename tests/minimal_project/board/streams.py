from channels.db import database_sync_to_async

from realtime.actions import ActionContext, action
from realtime.events import Payload, declare
from realtime.protocol import ErrorCode, ProtocolError
from realtime.registry import AnyUser, Event, register_stream

from .models import Post
from .services import post_create


class PostData(Payload):
    """``board.post`` data (``Post.data``)."""

    author: str
    text: str


def authorize(user: AnyUser, topic: str) -> None:
    """Signed-in users may read and post on any topic."""
    if not user.is_authenticated:
        raise ProtocolError(ErrorCode.UNAUTHENTICATED, "sign in to use the board")


def replay(topic: str, since: int, limit: int) -> list[Event]:
    """The topic's posts after ``since``, oldest first, at most ``limit``."""
    posts = Post.objects.filter(topic=topic, offset__gt=since).order_by("offset")[:limit]
    return [Event("board.post", post.data(), post.offset) for post in posts]


# `board:<topic>`: durable (replay, head), with presence (presence.state, .join, .leave).
register_stream("board", authorize=authorize, replay=replay, head=Post.last_offset, presence=True)
declare("board", "board.post", PostData, durable=True, summary="A new post, at its offset.")


@action("board.post")
async def board_post(ctx: ActionContext, frame: dict[str, object]) -> dict[str, int]:
    """``{"type": "board.post", "topic", "text"}`` → ``ack {offset}``."""
    topic, text = str(frame.get("topic", "")), str(frame.get("text", ""))
    authorize(ctx.user, topic)
    create = database_sync_to_async(post_create)
    post = await create(author=ctx.user.get_username(), topic=topic, text=text)
    return {"offset": post.offset}
