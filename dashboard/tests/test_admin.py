"""The feed's admin: the switch through feed_switch_set; records read-only."""

from __future__ import annotations

from unittest import mock

import pytest
from django.test import Client

from dashboard.models import FeedRecord, FeedSwitch

from .conftest import Demo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(demo: Demo) -> Client:
    """A client signed in as alice (staff, superuser)."""
    client = Client()
    client.force_login(demo.alice)
    return client


def test_the_switch_is_added_once_as_row_1_and_flipped_through_the_service(
    demo: Demo, admin_client: Client
) -> None:
    FeedSwitch.objects.all().delete()
    with mock.patch("realtime.publish.publish") as publish:
        added = admin_client.post("/admin/dashboard/feedswitch/add/", {"status": FeedSwitch.ON})
    assert added.status_code == 302, added.content.decode()[-2000:]
    assert list(FeedSwitch.objects.values_list("pk", "status")) == [(1, FeedSwitch.ON)]
    publish.assert_called_once_with("feed", "feed.state", {"on": True, "records": 0}, offset=None)
    assert admin_client.get("/admin/dashboard/feedswitch/add/").status_code == 403
    with mock.patch("realtime.publish.publish") as publish:
        off = admin_client.post("/admin/dashboard/feedswitch/1/change/", {"status": FeedSwitch.OFF})
    assert off.status_code == 302
    assert FeedSwitch.objects.get(pk=1).status == FeedSwitch.OFF
    publish.assert_called_once_with("feed", "feed.state", {"on": False, "records": 0}, offset=None)
    assert (
        admin_client.post("/admin/dashboard/feedswitch/1/delete/", {"post": "yes"}).status_code
        == 403
    )


def test_feed_records_are_read_only(demo: Demo, admin_client: Client) -> None:
    record = FeedRecord.objects.create(text="tick")
    assert admin_client.post("/admin/dashboard/feedrecord/add/", {"text": "x"}).status_code == 403
    url = f"/admin/dashboard/feedrecord/{record.pk}/"
    assert admin_client.post(url + "change/", {"text": "x"}).status_code == 403
    assert admin_client.post(url + "delete/", {"post": "yes"}).status_code == 403
    assert list(FeedRecord.objects.values_list("text", flat=True)) == ["tick"]
