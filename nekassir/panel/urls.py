"""The service menu's URLs: each page once for managers and once inside a kiosk's embed.

Manager pages need a login (``manager_view``); the same views under ``/kiosk/<code>/service/`` are
limited to that kiosk and need its PIN (``embed_view``). Names: ``panel:<name>`` and
``panel:embed_<name>``; ``Scope.url`` picks the right one.
"""

from collections.abc import Callable

from django.http import HttpResponse
from django.urls import path

from nekassir.panel.access import embed_view, manager_view
from nekassir.panel.views import alerts, connection, embed, jobs, orders, reports, shifts, venue

app_name = "panel"

# (route, view, name, kiosk-scoped: its manager route starts with kiosks/<code>/)
SHARED: list[tuple[str, Callable[..., HttpResponse], str, bool]] = [
    ("orders/", venue.orders, "orders", False),
    ("orders/<uuid:order_id>/", orders.order, "order", False),
    ("orders/<uuid:order_id>/refund/", orders.refund, "refund", False),
    ("orders/<uuid:order_id>/refunds/", orders.refunds, "refunds", False),
    ("orders/<uuid:order_id>/resend/", orders.resend, "resend", False),
    ("shifts/<int:shift_id>/", shifts.shift, "shift", False),
    ("jobs/<int:job_id>/", jobs.job, "job", False),
    ("blocks/", venue.kiosk_states, "kiosk_states", False),  # the page's one poller of every kiosk block
    ("block/", venue.kiosk_block, "kiosk_block", True),
    ("shift/open/", venue.shift_open, "shift_open", True),
    ("shift/close/", venue.shift_close, "shift_close", True),
    ("xreport/", venue.xreport, "xreport", True),
    ("settle/", venue.settle, "settle", True),
    ("check/", venue.check, "check", True),
    ("shifts/", shifts.shifts, "shifts", True),
    ("print/receipt/<int:document_id>/", orders.print_receipt, "print_receipt", True),
    ("print/slip/<int:operation_id>/", orders.print_slip, "print_slip", True),
]

urlpatterns = [
    path("", manager_view(venue.home), name="home"),
    path("journal/", manager_view(venue.journal), name="journal"),
    # Managers only: the venue's problems (a fragment of the venue page), and the admin's «Проверить связь».
    path("alerts/", manager_view(alerts.alerts), name="alerts"),
    path("kiosks/<str:code>/connection/", manager_view(connection.connection), name="connection"),
    # A named manager resolves an unknown card operation by hand (resolved_by): not from a kiosk's PIN screen.
    path("orders/<uuid:order_id>/card/charged/", manager_view(orders.card_charged), name="card_charged"),
    path("orders/<uuid:order_id>/card/not-charged/", manager_view(orders.card_not_charged), name="card_not_charged"),
    # A correction receipt answers to a named manager (who and why): not from a kiosk's PIN screen.
    path("shifts/<int:shift_id>/correction/", manager_view(shifts.correction), name="correction"),
    # Reports for the accountant (issue 14): managers only, the embed has none. Other tools rely on these addresses.
    path("reports/", manager_view(reports.reports), name="reports"),
    path("reports/export.csv", manager_view(reports.export_csv), name="report_csv"),
    path("reports/export.xlsx", manager_view(reports.export_xlsx), name="report_xlsx"),
    path("reports/totals/", manager_view(reports.totals), name="report_totals"),  # the orders list's top block
    path("kiosk/<str:code>/service/", embed.home, name="embed_home"),
    path("kiosk/<str:code>/service/lock/", embed.lock, name="embed_lock"),
]
for route, view, name, kiosk_scoped in SHARED:
    manager_route = f"kiosks/<str:code>/{route}" if kiosk_scoped else route
    urlpatterns.append(path(manager_route, manager_view(view), name=name))
    urlpatterns.append(path(f"kiosk/<str:code>/service/{route}", embed_view(view, kiosk_scoped=kiosk_scoped),
                            name=f"embed_{name}"))
