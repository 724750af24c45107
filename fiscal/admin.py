from django.contrib import admin

from core.admin import HistoryAdmin
from fiscal.models import Correction, FiscalDocument, FiscalOperation, Shift

# Fiscal history is never added, edited or deleted here (core.admin.HistoryAdmin); a gap is fixed with a
# correction receipt, made from the shift page.


@admin.register(FiscalOperation)
class FiscalOperationAdmin(HistoryAdmin):
    accusative = "операцию ККТ"
    list_display = ("created_at", "kiosk", "task_type", "state", "fd_number", "receipt_number", "error_kind")
    list_filter = ("state", "task_type", "kiosk")
    search_fields = ("uuid", "reference")
    list_select_related = ("kiosk",)


@admin.register(Shift)
class ShiftAdmin(HistoryAdmin):
    """Opened and closed by the register; reconciled from the shift page."""

    accusative = "смену"
    list_display = ("kiosk", "number", "fn_number", "state", "opened_at", "closed_at", "reconciled")
    list_filter = ("state", "kiosk", "reconciled")
    list_select_related = ("kiosk",)


@admin.register(FiscalDocument)
class FiscalDocumentAdmin(HistoryAdmin):
    list_display = ("registered_at", "kiosk", "doc_type", "fd_number", "fpd", "receipt_number", "shift_number", "total")
    list_filter = ("doc_type", "kiosk")
    search_fields = ("fd_number", "fpd")
    list_select_related = ("kiosk",)


@admin.register(Correction)
class CorrectionAdmin(HistoryAdmin):
    """Made from the shift page only (a device job under the register's lock), never here."""

    list_display = ("created_at", "kiosk", "kind", "basis", "shift", "total", "created_by")
    list_filter = ("kind", "basis", "kiosk")
    list_select_related = ("kiosk", "shift", "created_by")
