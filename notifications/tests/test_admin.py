"""The inbox admin writes through the services: offsets assigned, events after commit."""

from __future__ import annotations

from unittest import mock

import pytest
from django.test import Client

from notifications import services
from notifications.models import Notification

from .conftest import Demo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(demo: Demo) -> Client:
    """A client signed in as alice (staff, superuser)."""
    client = Client()
    client.force_login(demo.alice)
    return client


def test_a_notification_added_in_the_admin_takes_the_next_offset_and_is_pushed(
    demo: Demo, admin_client: Client
) -> None:
    services.notifications_create(recipient_ids=[demo.bob.pk], kind="note", title="first")
    with mock.patch("notifications.services.publish_many") as publish_many:
        response = admin_client.post(
            "/admin/notifications/notification/add/",
            {"recipient": demo.bob.pk, "kind": "note", "title": "Hello", "body": "", "data": "{}"},
        )
    assert response.status_code == 302, response.content.decode()[-2000:]
    stored = Notification.objects.get(recipient=demo.bob, offset=2)
    assert (stored.kind, stored.title) == ("note", "Hello")
    (event,) = list(publish_many.call_args.args[0])
    assert (event.stream, event.event, event.offset) == (
        f"user:{demo.bob.pk}",
        "notification.created",
        2,
    )
    assert (event.data["title"], event.data["unread"]) == ("Hello", 2)


def test_notifications_are_read_only_but_can_be_marked_read(
    demo: Demo, admin_client: Client
) -> None:
    (note,) = services.notifications_create(recipient_ids=[demo.bob.pk], kind="note", title="x")
    url = f"/admin/notifications/notification/{note.pk}/"
    assert admin_client.post(url + "change/", {"title": "y"}).status_code == 403
    assert admin_client.post(url + "delete/", {"post": "yes"}).status_code == 403
    with mock.patch("notifications.services.publish") as publish:
        response = admin_client.post(
            "/admin/notifications/notification/",
            {"action": "mark_read", "_selected_action": [note.pk]},
        )
    assert response.status_code == 302
    note.refresh_from_db()
    assert (note.title, note.read_at is not None) == ("x", True)
    publish.assert_called_once_with(f"user:{demo.bob.pk}", "notification.unread", {"unread": 0})
