"""Signals of the real-time core, for apps that watch sockets (dashboard, metrics).

Receivers run on the event loop, in the consumer's task: keep them quick, never touch the ORM
synchronously, never block.

``socket_opened(sender=consumer_class, consumer=...)``: after a socket was accepted.
``socket_closed(sender=consumer_class, consumer=..., code=int)``: after it closed.
"""

from django.dispatch import Signal

socket_opened = Signal()
socket_closed = Signal()
