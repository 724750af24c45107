"""The venue's current problems: a fragment the venue page loads (and refreshes) by htmx."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from nekassir.panel.access import Scope
from nekassir.panel.alerts_panel import current_alerts


@require_GET
def alerts(request: HttpRequest, scope: Scope) -> HttpResponse:
    rows, more = current_alerts(scope)
    return render(request, "panel/_alerts.html#alerts-list",
                  {"scope": scope, "alerts": rows, "more_orders": more, "checked_at": timezone.now()})
