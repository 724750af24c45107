from django.contrib import admin

from fiscal.models import Correction, FiscalDocument, FiscalOperation, Shift


class ReadOnlyHistoryAdmin(admin.ModelAdmin):
    """Fiscal history is never edited or deleted; a gap is fixed with a correction receipt."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(FiscalOperation)
class FiscalOperationAdmin(ReadOnlyHistoryAdmin):
    list_display = ("created_at", "kiosk", "task_type", "state", "fd_number", "receipt_number", "error_kind")
    list_filter = ("state", "task_type", "kiosk")
    search_fields = ("uuid", "reference")
    list_select_related = ("kiosk",)


@admin.register(Shift)
class ShiftAdmin(admin.ModelAdmin):
    list_display = ("kiosk", "number", "fn_number", "state", "opened_at", "closed_at", "reconciled")
    list_filter = ("state", "kiosk", "reconciled")
    list_select_related = ("kiosk",)
    readonly_fields = ("kiosk", "fn_number", "number", "opened_at", "closed_at", "expires_at", "receipts_count",
                       "register_totals")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FiscalDocument)
class FiscalDocumentAdmin(ReadOnlyHistoryAdmin):
    list_display = ("registered_at", "kiosk", "doc_type", "fd_number", "fpd", "receipt_number", "shift_number", "total")
    list_filter = ("doc_type", "kiosk")
    search_fields = ("fd_number", "fpd")
    list_select_related = ("kiosk",)


@admin.register(Correction)
class CorrectionAdmin(ReadOnlyHistoryAdmin):
    """Made from the shift page only (a device job under the register's lock), never here."""

    list_display = ("created_at", "kiosk", "kind", "basis", "shift", "total", "created_by")
    list_filter = ("kind", "basis", "kiosk")
    list_select_related = ("kiosk", "shift", "created_by")
