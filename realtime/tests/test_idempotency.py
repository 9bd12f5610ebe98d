"""The ``Idempotency-Key`` rules (``realtime.idempotency``) on a test view whose write is a
``Group`` row: replay, reuse (422), in flight (409), bad keys (400), per user, 4xx recorded,
5xx and bugs free the key, a taken-over key rolls its write back, expiry."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import OperationalError
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from realtime import idempotency
from realtime.background import Runner
from realtime.idempotency import (
    HEADER,
    MAX_KEY_LENGTH,
    REPLAYED_HEADER,
    InvalidKey,
    delete_expired,
    idempotent,
    parse_key,
    request_fingerprint,
)
from realtime.lease import LocalLease
from realtime.models import IdempotencyKey

pytestmark = pytest.mark.django_db

factory = APIRequestFactory()


class WriteView(APIView):
    """``POST {"name", "fail"?}``: creates a ``Group``; ``fail`` picks a failure after the
    write. ``calls`` counts the handler's runs; ``during`` runs inside the handler."""

    permission_classes = [AllowAny]
    calls = 0
    during: Any = None

    @idempotent
    def post(self, request: Request) -> Response:
        type(self).calls += 1
        data: Any = request.data
        group = Group.objects.create(name=data["name"])
        if type(self).during is not None:
            type(self).during(request)
        fail = data.get("fail")
        if fail == "refused":
            return Response({"code": "refused", "detail": "no"}, status=409)
        if fail == "forbidden":
            raise DjangoPermissionDenied("not yours")
        if fail == "database":
            raise OperationalError("the database went away")
        if fail == "bug":
            raise RuntimeError("a bug")
        return Response({"id": group.pk, "name": group.name, "when": timezone.now()}, status=201)


@pytest.fixture(autouse=True)
def reset_view() -> None:
    WriteView.calls = 0
    WriteView.during = None


@pytest.fixture
def ann(db: None) -> User:
    return User.objects.create_user("ann")


@pytest.fixture
def ben(db: None) -> User:
    return User.objects.create_user("ben")


def post(
    user: User | None, body: dict[str, Any], key: str | None = "k-1", path: str = "/api/w/"
) -> Response:
    headers = {} if key is None else {HEADER: key}
    request = factory.post(path, body, format="json", headers=headers)
    if user is not None:
        force_authenticate(request, user=user)
    response = WriteView.as_view()(request)
    response.render()
    return response


def body(response: Response) -> Any:
    return json.loads(response.content)


# --- The key's syntax -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"8e03978e-40d5"', "8e03978e-40d5"),  # the draft's sf-string
        ('"a\\"b\\\\c"', 'a"b\\c'),
        ("a b", "a b"),
        ("x" * MAX_KEY_LENGTH, "x" * MAX_KEY_LENGTH),
    ],
)
def test_a_key_is_bare_or_a_quoted_structured_string(value: str, key: str) -> None:
    assert parse_key(value) == key


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ('""', "empty"),
        ("x" * (MAX_KEY_LENGTH + 1), "longer than 255"),
        ('"' + "x" * (MAX_KEY_LENGTH + 1) + '"', "longer than 255"),
        ("a\x01b", "printable ASCII"),
        ("a\x7fb", "printable ASCII"),
        ("caf\u00e9", "printable ASCII"),
        ('"abc', "end with a quote"),
        ('"a\\nb"', "escaped"),
        ('"a"b"', "unescaped quote"),
    ],
)
def test_a_malformed_key_is_refused_with_the_reason(value: str, why: str) -> None:
    with pytest.raises(InvalidKey, match=why):
        parse_key(value)


def test_the_fingerprint_is_of_the_canonical_json() -> None:
    assert request_fingerprint({"a": 1, "b": [2, "x"]}) == request_fingerprint(
        {"b": [2, "x"], "a": 1}
    )
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": 2})
    assert request_fingerprint({"a": 1}) != request_fingerprint({"a": "1"})
    assert len(request_fingerprint({})) == 64


# --- Replay, reuse, in flight ---------------------------------------------------------------


def test_a_retry_gets_the_first_answer_and_writes_nothing(ann: User) -> None:
    first = post(ann, {"name": "g1"})
    assert first.status_code == 201
    assert REPLAYED_HEADER not in first
    answers = [post(ann, {"name": "g1"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert {a.content for a in answers} == {first.content}  # byte for byte, time included
    assert [a[REPLAYED_HEADER] for a in answers] == ["true"] * 3
    assert WriteView.calls == 1
    assert list(Group.objects.values_list("name", flat=True)) == ["g1"]
    row = IdempotencyKey.objects.get()
    assert (row.user_id, row.key, row.state, row.response_status) == (ann.pk, "k-1", "done", 201)
    assert row.request_path == "POST /api/w/"
    assert json.loads(row.response_body) == body(first)


def test_the_quoted_and_the_bare_form_are_one_key(ann: User) -> None:
    first = post(ann, {"name": "g1"}, key="abc")
    again = post(ann, {"name": "g1"}, key='"abc"')
    assert (again.status_code, again.content, again[REPLAYED_HEADER]) == (
        201,
        first.content,
        "true",
    )


def test_the_same_key_with_another_body_or_path_is_422_and_writes_nothing(ann: User) -> None:
    post(ann, {"name": "g1"})
    other_body = post(ann, {"name": "g2"})
    other_path = post(ann, {"name": "g1"}, path="/api/other/")
    for answer in (other_body, other_path):
        assert answer.status_code == 422
        assert body(answer)["code"] == "idempotency_key_reused"
        assert "different request" in body(answer)["detail"]
        assert REPLAYED_HEADER not in answer
    assert WriteView.calls == 1
    assert list(Group.objects.values_list("name", flat=True)) == ["g1"]


def test_a_retry_while_the_first_runs_is_409_and_writes_nothing(ann: User) -> None:
    inner: list[Response] = []
    # The retry arrives while the first request is inside its write.
    WriteView.during = lambda request: inner.append(post(ann, {"name": "g1"}))
    first = post(ann, {"name": "g1"})
    WriteView.during = None
    assert first.status_code == 201
    assert inner[0].status_code == 409
    assert body(inner[0])["code"] == "idempotency_key_in_flight"
    assert WriteView.calls == 1
    assert Group.objects.count() == 1
    # Once the first has answered, the retry gets its answer.
    assert post(ann, {"name": "g1"}).content == first.content


def test_a_key_inserted_between_the_read_and_the_insert_is_read_again(
    ann: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now()
    IdempotencyKey.objects.create(
        user=ann,
        key="k-1",
        request_path="POST /api/w/",
        fingerprint=request_fingerprint({"name": "g1"}),
        attempt="other",
        created_at=now,
        locked_at=now,
    )
    reads: list[object] = []
    first = QuerySet.first

    def first_misses_once(queryset: QuerySet[Any]) -> Any:
        found = first(queryset)
        reads.append(found)
        return None if len(reads) == 1 else found  # the race: not there yet at the read

    monkeypatch.setattr(QuerySet, "first", first_misses_once)
    answer = post(ann, {"name": "g1"})
    assert answer.status_code == 409  # the unique constraint caught it; then read: in flight
    assert len(reads) == 2
    assert WriteView.calls == 0


def test_a_key_is_per_user(ann: User, ben: User) -> None:
    assert post(ann, {"name": "g-ann"}).status_code == 201
    assert post(ben, {"name": "g-ben"}).status_code == 201
    assert WriteView.calls == 2
    assert sorted(Group.objects.values_list("name", flat=True)) == ["g-ann", "g-ben"]
    assert IdempotencyKey.objects.filter(key="k-1").count() == 2


def test_without_a_key_or_a_user_every_request_runs(ann: User) -> None:
    post(ann, {"name": "g1"}, key=None)
    post(ann, {"name": "g2"}, key=None)
    post(None, {"name": "g3"})  # anonymous: no key of anybody's
    post(None, {"name": "g4"})
    assert WriteView.calls == 4
    assert Group.objects.count() == 4
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize("key", ["", "x" * 256, "a\x01b", '"open'])
def test_a_malformed_key_is_400_and_runs_nothing(ann: User, key: str) -> None:
    answer = post(ann, {"name": "g1"}, key=key)
    assert answer.status_code == 400
    assert body(answer)["code"] == "idempotency_key_invalid"
    assert body(answer)["detail"].startswith("Bad Idempotency-Key: ")
    assert WriteView.calls == 0
    assert not Group.objects.exists()
    assert not IdempotencyKey.objects.exists()


# --- What is recorded ------------------------------------------------------------------------


@pytest.mark.parametrize(("fail", "status"), [("refused", 409), ("forbidden", 403)])
def test_a_4xx_is_recorded_and_replayed_as_is(ann: User, fail: str, status: int) -> None:
    first = post(ann, {"name": "g1", "fail": fail})
    again = post(ann, {"name": "g1", "fail": fail})
    assert (first.status_code, again.status_code) == (status, status)
    assert again.content == first.content
    assert again[REPLAYED_HEADER] == "true"
    assert WriteView.calls == 1
    # A raised exception rolled its write back; a returned answer kept it (the view's call).
    assert Group.objects.count() == (1 if fail == "refused" else 0)


def test_a_5xx_records_nothing_and_frees_the_key_for_the_retry(ann: User) -> None:
    failed = post(ann, {"name": "g1", "fail": "database"})
    assert failed.status_code == 503
    assert body(failed)["code"] == "unavailable"
    assert not Group.objects.exists()  # the write was rolled back
    assert not IdempotencyKey.objects.exists()
    WriteView.calls = 0
    # The retry runs again (here it fails again: the same 503, not a replay).
    retried = post(ann, {"name": "g1", "fail": "database"})
    assert (retried.status_code, WriteView.calls) == (503, 1)
    assert REPLAYED_HEADER not in retried


def test_a_bug_records_nothing_and_frees_the_key(ann: User) -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        post(ann, {"name": "g1", "fail": "bug"})
    assert not Group.objects.exists()
    assert not IdempotencyKey.objects.exists()


def test_an_abandoned_key_is_taken_over(ann: User) -> None:
    long_ago = timezone.now() - timedelta(seconds=idempotency.ABANDONED_AFTER_SECONDS + 1)
    IdempotencyKey.objects.create(
        user=ann,
        key="k-1",
        request_path="POST /api/w/",
        fingerprint=request_fingerprint({"name": "g1"}),
        attempt="dead",
        created_at=long_ago,
        locked_at=long_ago,
    )
    answer = post(ann, {"name": "g1"})
    assert answer.status_code == 201
    row = IdempotencyKey.objects.get()
    assert (row.state, row.response_status, row.created_at) == ("done", 201, long_ago)
    assert row.attempt != "dead"


def test_an_attempt_that_lost_its_key_rolls_its_write_back(ann: User) -> None:
    def taken_over(request: Request) -> None:
        IdempotencyKey.objects.update(attempt="another")

    WriteView.during = taken_over
    answer = post(ann, {"name": "g1"})
    assert answer.status_code == 409
    assert body(answer)["code"] == "idempotency_key_in_flight"
    assert not Group.objects.exists()
    # Not freed: the key belongs to the attempt that took it over. (Here the takeover ran
    # in the rolled-back transaction; from another connection it stays committed.)
    row = IdempotencyKey.objects.get()
    assert (row.state, row.response_status, row.response_body) == ("in_flight", None, "")


# --- Expiry -----------------------------------------------------------------------------------


def make_key(user: User, key: str, age: timedelta) -> None:
    at = timezone.now() - age
    IdempotencyKey.objects.create(
        user=user,
        key=key,
        request_path="POST /api/w/",
        fingerprint="f",
        state="done",
        attempt="a",
        response_status=201,
        response_body="{}",
        created_at=at,
        locked_at=at,
    )


def test_delete_expired_deletes_keys_older_than_the_ttl(ann: User, settings: Any) -> None:
    make_key(ann, "old", timedelta(hours=24, seconds=1))
    make_key(ann, "young", timedelta(hours=23, minutes=59))
    assert delete_expired() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["young"]
    settings.TOWNSQUARE_REALTIME = {
        **settings.TOWNSQUARE_REALTIME,
        "IDEMPOTENCY_KEY_TTL_SECONDS": 60,
    }
    assert delete_expired() == 1
    assert not IdempotencyKey.objects.exists()


def test_an_expired_key_not_yet_deleted_is_a_new_key(ann: User) -> None:
    make_key(ann, "k-1", timedelta(days=2))
    answer = post(ann, {"name": "g1"})
    assert answer.status_code == 201
    assert REPLAYED_HEADER not in answer
    assert WriteView.calls == 1
    assert IdempotencyKey.objects.get().response_status == 201


def test_the_expiry_runs_on_the_leader_only() -> None:
    service = Runner(lease=LocalLease("leader", 10.0)).services["idempotency-expiry"]
    assert service.leader_only is True
    assert service.factory is idempotency.run_expiry
