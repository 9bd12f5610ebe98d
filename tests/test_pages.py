"""The site's own pages: 403, 404 and 500 in the site's layout, the API index (``/api/``) and the
self-hosted API reference (``/api/docs/``). In-process, with DEBUG off as in production."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.test import Client, override_settings
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator

from chat.models import Room

# --- a URLconf with the project's routes, plus views that fail on purpose --------------------


def _forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("only the room's moderators may do that")


def _forbidden_silent(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


def _broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug")


urlpatterns = [
    path("fail/403/", _forbidden),
    path("fail/403-silent/", _forbidden_silent),
    path("fail/500/", _broken),
    path("api/fail/500/", _broken),
    path("", include("townsquare.urls")),
]
handler400 = "realtime.api_errors.bad_request"
handler403 = "realtime.api_errors.permission_denied"
handler404 = "realtime.api_errors.page_not_found"
handler500 = "realtime.api_errors.server_error"

HOME_LINK = '<a id="error-home" href="/">Go to the home page</a>'
PRIVATE_ROOM_HELP = "ask a member or the room's creator to add you"
LAYOUT = (
    '<header class="site-header">',
    'href="/static/townsquare/site.css"',
    '<main class="page">',
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.urls(__name__),
]


@pytest.fixture(autouse=True)
def _production_errors(settings: Any) -> None:
    settings.DEBUG = False


@pytest.fixture
def demo(db: None) -> None:
    call_command("demo", stdout=open("/dev/null", "w"))  # noqa: SIM115


def signed_in(username: str) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(User.objects.get(username=username))
    return client


def body(response: Any) -> str:
    return str(response.content.decode())


def assert_site_page(html: str) -> None:
    for part in LAYOUT:
        assert part in html, part
    assert HOME_LINK in html


# --- 404 ----------------------------------------------------------------------------------


def test_404_is_a_site_page_with_the_path_and_a_way_home() -> None:
    response = Client().get("/no/such/page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    html = body(response)
    assert_site_page(html)
    assert '<h1 id="error-title">Page not found</h1>' in html
    assert "Nothing is at <code>/no/such/page/</code>." in html
    assert "Resolver404" not in html
    assert PRIVATE_ROOM_HELP not in html
    # Signed out: the header offers to sign in and come back.
    assert 'href="/accounts/login/?next=/no/such/page/"' in html


def test_404_escapes_the_path() -> None:
    html = body(Client().get("/%3Cscript%3Ealert(1)%3C/script%3E/"))
    assert "<script>alert(1)" not in html
    assert "Nothing is at <code>/%3Cscript%3Ealert" in html


@pytest.mark.usefixtures("demo")
def test_private_room_404_says_who_to_ask() -> None:
    staff = Room.objects.get(name="staff")
    assert staff.is_private
    carol = signed_in("carol")  # not a member of "staff"
    for path_ in (f"/chat/room/{staff.pk}/", "/chat/staff/", "/chat/room/999999/"):
        response = carol.get(path_)
        assert response.status_code == 404, path_
        html = body(response)
        assert_site_page(html)
        assert "it is private and you are not one of its members" in html
        assert PRIVATE_ROOM_HELP in html
        # The private room's name and members are not given away.
        assert "<h1>staff</h1>" not in html
        assert 'class="username">carol<' in html


def test_404_under_api_stays_json() -> None:
    response = Client().get("/api/no-such-endpoint/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


# --- 403 ----------------------------------------------------------------------------------


def test_403_shows_the_reason_and_a_way_home() -> None:
    response = Client().get("/fail/403/")
    assert response.status_code == 403
    html = body(response)
    assert_site_page(html)
    assert "Error 403" in html
    assert '<p id="error-detail">Only the room&#x27;s moderators may do that.</p>' in html
    # Signed out: it says so, with a sign-in link back to this page.
    assert 'href="/accounts/login/?next=/fail/403/">sign in</a>' in html


@pytest.mark.usefixtures("demo")
def test_403_without_a_reason_signed_in() -> None:
    response = signed_in("alice").get("/fail/403-silent/")
    assert response.status_code == 403
    html = body(response)
    assert_site_page(html)
    assert "Your account does not have access to this page." in html
    assert "ask the site's staff" in html
    assert 'class="username">alice<' in html


# --- 500 ----------------------------------------------------------------------------------


def test_500_is_a_site_page_with_a_way_home() -> None:
    response = Client(raise_request_exception=False).get("/fail/500/")
    assert response.status_code == 500
    html = body(response)
    assert_site_page(html)
    assert "Something went wrong on our side" in html
    assert "a bug" not in html  # no exception text, no traceback
    assert "Traceback" not in html


def test_500_under_api_stays_json() -> None:
    response = Client(raise_request_exception=False).get("/api/fail/500/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error.", "code": "internal"}


@pytest.mark.django_db(False)
def test_500_template_renders_without_context_or_database() -> None:
    # As django.views.defaults.server_error does: no request, no context. pytest-django
    # refuses any database query in a test not marked django_db.
    html = loader.get_template("500.html").render()
    assert_site_page(html)
    assert "Something went wrong on our side" in html
    assert "username" not in html


# --- /api/ ----------------------------------------------------------------------------------


def schema_paths() -> set[str]:
    return set(SchemaGenerator().get_schema(request=None, public=True)["paths"])


REFERENCE = {
    "docs": "/api/docs/",
    "schema": "/api/schema/",
    "asyncapi": "/api/asyncapi.json",
    "token": "/api/token/",
}


def test_api_index_json_lists_every_operation_and_the_references() -> None:
    response = Client().get("/api/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "Accept" in response["Vary"]
    index = response.json()
    assert index["title"] == "Townsquare API"
    assert {r["name"]: r["url"] for r in index["reference"]} == REFERENCE
    tags = [g["tag"] for g in index["groups"]]
    for tag in ("token", "rooms", "items", "notifications", "feed", "publish"):
        assert tag in tags
    assert tags.index("token") < tags.index("rooms") < tags.index("items")
    listed = [e["path"] for g in index["groups"] for e in g["endpoints"]]
    assert sorted(listed) == sorted(schema_paths())
    rooms = next(g for g in index["groups"] if g["tag"] == "rooms")
    assert rooms["title"] == "Rooms and messages"
    messages = next(e for e in rooms["endpoints"] if e["path"] == "/api/rooms/{room_id}/messages/")
    assert messages["methods"] == ["GET", "POST"]
    assert messages["docs"].startswith("/api/docs/#/rooms/")
    assert messages["summary"].endswith(".")
    assert "``" not in str(index)


def test_api_index_html_for_browsers_and_format_json() -> None:
    client = Client()
    response = client.get("/api/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = body(response)
    assert '<h1>Townsquare API <span class="tag">version 1</span></h1>' in html
    for url in REFERENCE.values():
        assert f'href="{url}"' in html
    for path_ in schema_paths():
        assert f"<code>{path_}</code>" in html
    assert '<a href="/api/" aria-current="page">API</a>' in html
    # curl's */* gets the page too; ?format=json the JSON.
    assert client.get("/api/", HTTP_ACCEPT="*/*")["Content-Type"].startswith("text/html")
    as_json = client.get("/api/?format=json", HTTP_ACCEPT="text/html")
    assert as_json["Content-Type"] == "application/json"
    assert as_json.json()["reference"][0]["url"] == "/api/docs/"


def test_api_index_is_read_only() -> None:
    assert Client().post("/api/").status_code == 405


def test_schema_stays_yaml_and_describes_every_part() -> None:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert body(response).startswith("openapi: 3")
    as_json = Client().get("/api/schema/?format=json")
    assert as_json.status_code == 200
    description = as_json.json()["info"]["description"]
    for part in (
        "## Signing in",
        "/api/token/",
        "**Rooms**",
        "**Messages**",
        "edit",
        "**reactions**",
        "**Read cursors**",
        "**Shop items**",
        "**purchases**",
        "**watches**",
        "**Notifications**",
        "**Dashboard feed**",
        "**Publish**",
        "## Idempotency keys",
        "## Errors",
        '{"detail": "<sentence>", "code": "<code>"}',
        "## Pagination",
    ):
        assert part in description, part


# --- /api/docs/ ---------------------------------------------------------------------------


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@override_settings(SERVESTATIC_USE_FINDERS=True)
def test_api_docs_use_only_same_origin_assets() -> None:
    client = Client()
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = body(response)
    assert "<script>" not in html and "<style>" not in html  # the CSP forbids inline code
    assert 'id="swagger-ui"' in html
    parser = _Assets()
    parser.feed(html)
    assert len(parser.urls) >= 5, parser.urls  # 2 stylesheets, icon, 2 bundles, start-up
    for url in parser.urls:
        assert re.match(r"^/(?!/)", url), f"not same-origin: {url}"
        asset = client.get(url)
        assert asset.status_code == 200, url
    script = client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert '"/api/schema/"' in body(script)
    assert '"deepLinking": true' in body(script)
    assert "swagger-ui-bundle.js" in html
    assert "/static/drf_spectacular_sidecar/" in html
