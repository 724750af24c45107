"""The status poll through the WSGI application that gunicorn serves (nekassir.wsgi): a short middleware chain
for ``GET /api/v1/orders/<id>``, the full one for everything else (issue 15)."""

from __future__ import annotations

import httpx
import pytest
from django.test import Client

from core.models import KioskToken
from nekassir.api import poll_handler
from tests.factories import make_kiosk
from tests.panel_support import fake_completed_order, fake_shift

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def served():
    """An HTTP client of nekassir.wsgi.application, the module gunicorn loads."""
    from nekassir.wsgi import application

    with httpx.Client(transport=httpx.WSGITransport(app=application), base_url="http://testserver") as http:
        yield http


@pytest.fixture
def polled(db):
    kiosk = make_kiosk("http://127.0.0.1:9/", "K1")  # never called: the poll reads the database only
    return fake_completed_order(kiosk, fake_shift(kiosk)), KioskToken.issue(kiosk)


def test_the_poll_answers_as_through_the_full_chain_with_fewer_middleware(served, polled, monkeypatch):
    order, token = polled
    bearer = {"Authorization": f"Bearer {token}"}
    calls = []
    monkeypatch.setattr(poll_handler.PollHandler, "get_response",
                        lambda self, request: calls.append(request.path) or super(
                            poll_handler.PollHandler, self).get_response(request))
    answer = served.get(f"/api/v1/orders/{order.pk}", headers=bearer)
    assert calls == [f"/api/v1/orders/{order.pk}"]  # through the poll's handler
    full = Client().get(f"/api/v1/orders/{order.pk}", headers=bearer)  # Django's handler, every middleware
    assert answer.status_code == full.status_code == 200
    assert answer.json() == full.json()
    assert answer.headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware stays
    assert answer.headers["Content-Language"] == "ru"  # LocaleMiddleware stays
    assert "Content-Security-Policy" in full.headers and "Content-Security-Policy" not in answer.headers
    # Errors are the API's JSON, as before.
    assert served.get(f"/api/v1/orders/{order.pk}", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert served.get("/api/v1/orders/not-a-uuid", headers=bearer).json()["error"]["code"] == "not_found"
    assert len(calls) == 3


def test_everything_else_goes_through_the_full_chain(served, polled, monkeypatch):
    calls = []
    monkeypatch.setattr(poll_handler.PollHandler, "get_response", lambda self, request: calls.append(request.path))
    login = served.get("/login/")
    assert login.status_code == 200 and "Content-Security-Policy" in login.headers
    assert served.post("/api/v1/orders", json={}).status_code == 401  # the POST: full chain
    assert served.get("/api/v1/openapi.json").status_code == 200
    assert calls == []


def test_the_poll_chain_keeps_only_the_named_middleware_in_settings_order(settings):
    handler = poll_handler.PollHandler()
    names = [type(m).__name__ for m in _chain(handler)]
    assert names == ["SecurityMiddleware", "LocaleMiddleware"]
    assert "csp.middleware.CSPMiddleware" in settings.MIDDLEWARE  # the full chain is untouched


def _chain(handler):
    found, current = [], handler._middleware_chain
    while current is not None:
        inner = getattr(current, "__wrapped__", current)
        if hasattr(inner, "get_response"):
            found.append(inner)
            current = inner.get_response
        else:
            current = getattr(inner, "__wrapped__", None)
            break
    return found
