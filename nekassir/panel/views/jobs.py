"""Following a job: the polling fragment, stopped with 286 once the job has an outcome."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from nekassir.panel import jobs
from nekassir.panel.access import Scope
from nekassir.panel.views.common import STOP_POLLING, job_context, page


@require_GET
def job(request: HttpRequest, scope: Scope, job_id: int) -> HttpResponse:
    start = (scope.events().filter(pk=job_id, action__in=[f"panel.{k}" for k in jobs.KINDS])
             .select_related("kiosk", "user").first())
    if start is None:
        raise Http404("no such job")
    state = jobs.job_state(start)
    context = job_context(scope, state)
    if not getattr(request, "htmx", False):
        return page(request, scope, "panel/job.html", context)
    return render(request, "panel/_job.html", {**context, "oob": state.finished},
                  status=STOP_POLLING if state.finished else 200)
