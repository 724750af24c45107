from django.contrib import admin

from marking.models import MarkedProduct, MarkingCheck


@admin.register(MarkedProduct)
class MarkedProductAdmin(admin.ModelAdmin):
    list_display = ("name", "product_id", "group", "gtins")
    list_filter = ("group",)
    search_fields = ("name", "product_id")


@admin.register(MarkingCheck)
class MarkingCheckAdmin(admin.ModelAdmin):
    """The journal of requests to the check service: read only."""

    list_display = ("created_at", "kiosk", "state", "req_id")
    list_filter = ("state", "kiosk")
    search_fields = ("id", "req_id")
    list_select_related = ("kiosk",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
