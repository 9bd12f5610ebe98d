"""Errors of the HTTP API: JSON under /api/, a 4xx for bad input (realtime/api_errors.py,
townsquare/converters.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import DataError, IntegrityError
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from realtime import api_errors
from realtime.tokens import issue_token
from townsquare.converters import ID_MAX, IdConverter

TOO_BIG = str(2**63)  # one past the largest bigint


@pytest.mark.parametrize("value", ["1", "0000000000000000042", str(ID_MAX)])
def test_id_converter_takes_ids_of_one_to_bigint_max(value: str) -> None:
    assert IdConverter().to_python(value) == int(value)


@pytest.mark.parametrize("value", ["0", TOO_BIG, "9999999999999999999"])
def test_id_converter_refuses_ids_out_of_range(value: str) -> None:
    with pytest.raises(ValueError):
        IdConverter().to_python(value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", f"/api/items/{TOO_BIG}/"),
        ("post", f"/api/items/{TOO_BIG}/purchase/"),
        ("post", f"/api/rooms/{TOO_BIG}/messages/"),  # issue 11: was an HTML 500 on SQLite
        ("post", f"/api/notifications/{TOO_BIG}/read/"),
        ("get", "/api/rooms/0/messages/"),
        ("get", "/api/no-such-endpoint/"),
    ],
)
def test_an_unknown_api_url_is_a_json_404(
    method: str, path: str, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("erin", password="x")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(user)[0]}")
    response = getattr(client, method)(path, {"text": "hi", "quantity": 1}, format="json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.django_db
def test_pages_outside_the_api_keep_django_html_error_pages(client: Client) -> None:
    response = client.get(f"/shop/item/{TOO_BIG}/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_a_bad_host_under_the_api_is_a_json_400(client: Client) -> None:
    response = client.get("/api/items/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"detail": "Bad request.", "code": "bad_request"}


def test_server_error_is_json_under_the_api_only() -> None:
    factory = RequestFactory()
    api = api_errors.server_error(factory.get("/api/rooms/"))
    assert api.status_code == 500
    assert api["Content-Type"] == "application/json"
    assert b'"code": "internal"' in api.content
    page = api_errors.server_error(factory.get("/chat/room/1/"))
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


def test_permission_denied_is_json_under_the_api() -> None:
    response = api_errors.permission_denied(RequestFactory().get("/api/feed/"), Exception())
    assert response.status_code == 403
    assert b'"code": "forbidden"' in response.content


@pytest.mark.parametrize(
    "exc",
    [
        DataError("value \"9223372036854775808\" is out of range for type bigint"),
        DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
        OverflowError("Python int too large to convert to SQLite INTEGER"),
        ValueError("A string literal cannot contain NUL (0x00) characters."),
    ],
)
def test_input_the_database_refuses_is_a_400(exc: Exception) -> None:
    response = api_errors.api_exception_handler(exc, {"request": None})
    assert response is not None
    assert response.status_code == 400
    assert response.data["code"] == "invalid"


def test_an_integrity_error_is_a_409_conflict_not_a_retry() -> None:
    response = api_errors.api_exception_handler(IntegrityError("dup"), {"request": None})
    assert response is not None
    assert (response.status_code, response.data["code"]) == (409, "conflict")
    assert "Retry-After" not in response


@pytest.mark.parametrize("exc", [ValueError("a bug"), KeyError("x"), RuntimeError("x")])
def test_other_errors_stay_server_errors(exc: Exception) -> None:
    assert api_errors.api_exception_handler(exc, {"request": None}) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stream": "shop:item:1", "event": "x", "data": {"n": 2**64}}, "data"),
        ({"stream": "shop:item:1", "event": "x", "data": {}, "offset": 2**63}, "offset"),
    ],
)
def test_publish_refuses_integers_a_frame_cannot_carry(
    body: dict[str, Any], field: str, settings: Any
) -> None:
    settings.TOWNSQUARE_REALTIME = {**settings.TOWNSQUARE_REALTIME, "PUBLISH_API_KEY": "k" * 32}
    response = APIClient().post(
        "/api/publish/", body, format="json", HTTP_X_TOWNSQUARE_KEY="k" * 32
    )
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.django_db
def test_publishing_an_undeclared_event_is_a_400_not_an_error_log(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Validation is on in every test: the client's event is checked before publish, answered
    # 400 invalid, and logged as nothing worse than the request's own warning.
    settings.TOWNSQUARE_REALTIME = {**settings.TOWNSQUARE_REALTIME, "PUBLISH_API_KEY": "k" * 32}
    body = {"stream": "shop:item:1", "event": "shop.nonsense", "data": {}}
    response = APIClient().post(
        "/api/publish/", body, format="json", HTTP_X_TOWNSQUARE_KEY="k" * 32
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert "shop.nonsense" in response.json()["detail"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
