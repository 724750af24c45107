from django.contrib import admin

from nekassir.admin_secrets import SecretFieldsForm
from nekassir.models import DeviceLock, Event, Kiosk


class KioskForm(SecretFieldsForm):
    secret_fields = Kiosk.SECRET_FIELDS

    class Meta:
        model = Kiosk
        fields = "__all__"


@admin.register(Kiosk)
class KioskAdmin(admin.ModelAdmin):
    form = KioskForm
    list_display = ("code", "name", "active", "has_register", "atol_url", "terminal_transport", "register_ready",
                    "terminal_ready")
    list_filter = ("active", "has_register", "terminal_transport")
    search_fields = ("code", "name")
    readonly_fields = ("fn_number", "register_ready", "register_problem", "terminal_ready", "terminal_problem",
                       "registration_info")


@admin.register(DeviceLock)
class DeviceLockAdmin(admin.ModelAdmin):
    list_display = ("key", "holder", "purpose", "acquired_at", "expires_at")
    readonly_fields = ("key", "holder", "purpose", "acquired_at", "expires_at")


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "kiosk", "user", "message")
    list_filter = ("action", "kiosk")
    search_fields = ("message", "object_ref")

    def has_change_permission(self, request, obj=None):
        return False  # the journal is history: never edited

    def has_delete_permission(self, request, obj=None):
        return False
