"""URLs of the kiosk API: ``/api/v1/...`` and a JSON 404 for anything else under ``/api/``.

ninja answers a wrong method with a plain-text 405 and its root view raises a bare Http404, so
every view is wrapped to turn any non-JSON error answer into our JSON error body.
"""

from __future__ import annotations

import logging
from functools import wraps

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from nekassir.api.app import api
from nekassir.api.errors import STATUS_ERRORS, error_response

log = logging.getLogger(__name__)


def json_errors(view):
    """``view`` whose every error answer is a JSON error body, and never an HTML page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            return error_response(404)
        except RequestDataTooBig:
            return error_response(413)
        except Exception:
            log.exception("kiosk API: unexpected error on %s %s", request.method, request.path)
            return error_response(500)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            status = response.status_code if response.status_code in STATUS_ERRORS else 400
            converted = error_response(status)
            if response.has_header("Allow"):
                converted["Allow"] = response["Allow"]
            return converted
        return response

    # A bearer API reads no cookies, so CSRF does not apply (ninja exempts its endpoints, not its root).
    wrapper.csrf_exempt = True
    return wrapper


@csrf_exempt  # a bearer API: no cookies, so no CSRF; a stray POST gets JSON 404, not a 403 page
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response(404)


def _wrapped(patterns: list) -> list:
    out = []
    for pattern in patterns:
        if not isinstance(pattern, URLPattern):  # ninja gives flat patterns: fail loudly if that changes
            raise TypeError(f"unexpected URL entry in the kiosk API: {pattern!r}")
        out.append(URLPattern(pattern.pattern, json_errors(pattern.callback), pattern.default_args, pattern.name))
    return out


_patterns, _app_name, _namespace = api.urls

urlpatterns = [
    path("v1/", include((_wrapped(_patterns), _app_name), namespace=_namespace)),
    re_path(r"^(?P<rest>.*)$", not_found),
]
