"""The project's URL patterns as a list, for the tests that walk every page (access, security, fuzz)."""

from __future__ import annotations

import re

from django.urls import URLPattern, URLResolver


def walk(patterns, prefix: str = ""):
    """Every URL pattern under ``patterns`` as (route with <converters>, name)."""
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route, entry.name


def concrete(route: str, values: dict[str, str]) -> str:
    """A real URL for a route: each <converter:name> filled from ``values``, regexes stripped."""
    url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)
    url = url.lstrip("^").rstrip("$").replace(r"\Z", "")
    url = re.sub(r"\(\?P<rest>\.\*\)", "", url)
    return "/" + url
