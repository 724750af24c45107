from django.contrib import admin

from core.admin import HistoryAdmin, RussianAdmin
from marking.models import MarkedProduct, MarkingCheck


@admin.register(MarkedProduct)
class MarkedProductAdmin(RussianAdmin):
    list_display = ("name", "product_id", "group", "gtins")
    list_filter = ("group",)
    search_fields = ("name", "product_id")


@admin.register(MarkingCheck)
class MarkingCheckAdmin(HistoryAdmin):
    """The journal of requests to the check service: read only."""

    accusative = "проверку кодов маркировки"
    list_display = ("created_at", "kiosk", "state", "req_id")
    list_filter = ("state", "kiosk")
    search_fields = ("id", "req_id")
    list_select_related = ("kiosk",)
