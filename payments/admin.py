from django.contrib import admin

from core.admin import HistoryAdmin
from payments.models import CardOperation, Settlement


@admin.register(CardOperation)
class CardOperationAdmin(HistoryAdmin):
    accusative = "операцию терминала"
    list_display = ("created_at", "kiosk", "kind", "state", "amount", "rrn", "masked_pan", "reference")
    list_filter = ("state", "kind", "kiosk")
    search_fields = ("op_id", "rrn", "reference")
    list_select_related = ("kiosk",)


@admin.register(Settlement)
class SettlementAdmin(HistoryAdmin):
    accusative = "сверку итогов"
    list_display = ("created_at", "kiosk", "shift", "state", "attempts", "slip_printed")
    list_filter = ("state", "kiosk")
    list_select_related = ("kiosk", "shift")
