"""Helpers shared by the views: rendering for a viewer, and answering a started job."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from core.models import Event
from nekassir.numbers import format_number
from nekassir.panel import jobs, outcomes
from nekassir.panel.access import Scope

STOP_POLLING = 286  # htmx 2: swap this answer and stop the "every 1s" trigger
# What a row of panel/_orders_table.html shows (``.select_related("kiosk").only(*ORDER_ROW)``): an order's and
# its kiosk's JSON are not read for a list.
ORDER_ROW = ("number", "created_at", "kiosk__code", "status", "total")
# What a row of panel/_journal.html shows.
EVENT_ROW = ("created_at", "action", "message", "data", "object_ref", "kiosk__code", "user__username")


# Letters a manager may type in Cyrillic that look like the Latin ones of kiosk codes (``К1`` for ``K1``), and dashes.
LOOKALIKES = str.maketrans("АВЕКМНОРСТУХ–—‑", "ABEKMHOPCTYX---")
FULL_NUMBER = re.compile(r"(?P<code>[A-Z0-9_-]*[A-Z0-9_])-(?P<seq>\d{1,9})")


def number_search(query: str) -> Q:
    """The order search: «k1-7», «К1-007» (Cyrillic К) and «K1 - 07» all find ``K1-007`` (case, look-alike
    letters, spaces and zero padding do not matter); a part of a number («007», «K1») finds the numbers holding
    it."""
    text = re.sub(r"\s+", "", query).upper().translate(LOOKALIKES)
    full = FULL_NUMBER.fullmatch(text)
    if full:
        return Q(number__iexact=format_number(full["code"], int(full["seq"])))
    return Q(number__icontains=text)


def page(request: HttpRequest, scope: Scope, template: str, context: dict[str, Any] | None = None,
         status: int = 200) -> HttpResponse:
    return render(request, template, {"scope": scope, **(context or {})}, status=status)


def job_context(scope: Scope, state: jobs.JobState) -> dict[str, Any]:
    """What the job fragment shows: progress, or the outcome with the documents it made."""
    return {"scope": scope, "state": state, "outcome": outcomes.outcome(state, scope) if state.finished else None}


def job_answer(request: HttpRequest, scope: Scope, start: Event, back: str) -> HttpResponse:
    """The answer to the POST that started a job: its fragment (htmx) or the page that follows it."""
    if getattr(request, "htmx", False):
        state = jobs.job_state(start)
        return render(request, "panel/_job.html", {**job_context(scope, state), "oob": state.finished})
    path, _, fragment = back.partition("#")
    separator = "&" if "?" in path else "?"
    return HttpResponseRedirect(f"{path}{separator}job={start.pk}" + (f"#{fragment}" if fragment else ""))
