"""Group commit for messages sent over sockets: one transaction for what queued meanwhile.

Every socket's database work runs on the one thread ``database_sync_to_async`` uses, so a
busy server's ``chat.send`` frames queue for it one transaction each: a thread hop, a
``BEGIN``, the statements and a ``COMMIT`` per message. Here the frames that arrive while a
batch is being written wait together and go in as the next batch
(``services.message_create_many``): one hop and one commit for all of them. An idle server
writes a lone message at once, as before; the busier it is, the bigger the batches. This is
the group commit of database logs (DeWitt et al., "Implementation techniques for main
memory database systems", SIGMOD 1984; PostgreSQL's ``commit_delay``), without the delay.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from . import services
from .models import Message

#: Most messages in one transaction: bounds how long a batch holds the write lock.
MAX_BATCH = 200


class MessageWriter:
    """Writes the messages of one event loop's sockets in batches, in arrival order.

    Use ``write`` (one writer per event loop: ``get_writer``).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[services.NewMessage, asyncio.Future[Message]]] = []
        self._task: asyncio.Task[None] | None = None
        #: Batches written so far.
        self.batches = 0

    async def write(
        self,
        *,
        user: AbstractBaseUser | AnonymousUser,
        room_id: int,
        text: object,
        client_id: object = "",
    ) -> Message:
        """Store one message (with the others waiting) and publish it after commit.

        Raises what ``services.message_create`` raises: ``ValidationError``,
        ``PermissionDenied``, ``Room.DoesNotExist``, ``DatabaseError`` (nothing of its batch
        was stored).
        """
        checked = services.message_check(user=user, room_id=room_id, text=text, client_id=client_id)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Message] = loop.create_future()
        self._pending.append((checked, done))
        if self._task is None:
            # A fresh context: the task serves every socket, not the one that started it.
            self._task = loop.create_task(self._drain(), context=contextvars.Context())
        return await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    results = await database_sync_to_async(services.message_create_many)(
                        [item for item, _ in batch]
                    )
                except Exception as exc:  # the whole batch failed: tell each sender
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                self.batches += 1
                for (_, done), result in zip(batch, results, strict=True):
                    if done.done():  # its sender went away; the message is stored anyway
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._task = None


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MessageWriter] = (
    weakref.WeakKeyDictionary()
)


def get_writer() -> MessageWriter:
    """The running event loop's writer, created on first use."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = MessageWriter()
    return writer
