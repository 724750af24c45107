"""Admin for the orders side of the venue, for support staff's data fixes (imported by nekassir/admin.py).

Orders and their history are read-mostly: what the kiosk sent, what the devices answered and what
iiko said are evidence, never edited; the few fields a person may need to correct stay editable.
Every change through the admin is recorded by Django's own LogEntry (who, when, which fields), which
is registered here read-only and shown on the panel's journal page.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.models import LogEntry

from core.addresses import without_credentials
from core.admin import HistoryAdmin, RussianAdmin
from core.models import IikoConnection, KioskToken
from nekassir.admin_secrets import SecretFieldsForm
from nekassir.models import IikoAttempt, Order, OrderLine, OrderModifier, Refund


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ("position", "receipt_name", "name", "price", "quantity", "unit", "vat", "amount")
    readonly_fields = fields


class IikoAttemptInline(ReadOnlyInline):
    model = IikoAttempt
    fields = ("created_at", "iiko_order_id", "state", "iiko_number", "error_message")
    readonly_fields = fields
    show_change_link = True


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = ("created_at", "created_by", "state", "amount_kopecks", "to_card", "cancel_in_iiko", "iiko_state")
    readonly_fields = fields
    show_change_link = True


# Only what a person may have to correct by hand; everything else is the record of what happened.
ORDER_EDITABLE = ("phone", "email_or_phone")
ORDER_READONLY = tuple(
    f.name for f in Order._meta.get_fields()
    if getattr(f, "concrete", False) and not f.auto_created and f.name not in ORDER_EDITABLE
)


@admin.register(Order)
class OrderAdmin(RussianAdmin):
    list_display = ("number", "created_at", "kiosk", "status", "total", "iiko_number")
    list_filter = ("status", "kiosk", "order_type")
    search_fields = ("number", "id", "iiko_number")
    list_select_related = ("kiosk",)
    date_hierarchy = "created_at"
    inlines = [OrderLineInline, IikoAttemptInline, RefundInline]
    readonly_fields = (*ORDER_READONLY, "id")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OrderModifier)
class OrderModifierAdmin(RussianAdmin):
    list_display = ("line", "receipt_name", "price", "quantity", "amount")
    readonly_fields = ("line", "position", "product_id", "group_id", "name", "receipt_name", "price", "quantity",
                       "vat", "amount")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(IikoAttempt)
class IikoAttemptAdmin(HistoryAdmin):
    accusative = "попытку передачи в iiko"
    list_display = ("created_at", "order", "iiko_order_id", "state", "iiko_number")
    list_filter = ("state",)
    search_fields = ("iiko_order_id", "order__number", "correlation_id")
    list_select_related = ("order",)
    readonly_fields = ("order", "iiko_order_id", "as_delivery", "state", "correlation_id", "request", "responses",
                       "error_message", "iiko_number", "iiko_status", "created_at", "sent_at", "finished_at")


@admin.register(Refund)
class RefundAdmin(HistoryAdmin):
    """A refund is made from the order page, where it is validated and locked; here it is only read."""

    list_display = ("created_at", "order", "kiosk", "state", "amount", "to_card", "cancel_in_iiko", "created_by")
    list_filter = ("state", "kiosk", "to_card", "cancel_in_iiko")
    search_fields = ("order__number",)
    list_select_related = ("order", "kiosk", "created_by")
    readonly_fields = ("order", "kiosk", "lines", "amount_kopecks", "to_card", "cancel_in_iiko", "state",
                       "card_operation", "return_operation", "iiko_state", "message", "created_by", "created_at",
                       "finished_at")


@admin.register(KioskToken)
class KioskTokenAdmin(RussianAdmin):
    """Tokens are issued by ``manage.py demo`` / the API tooling and only shown once; here they are revoked."""

    list_display = ("prefix", "kiosk", "created_at", "revoked_at")
    list_filter = ("kiosk",)
    fields = ("kiosk", "prefix", "created_at", "revoked_at")  # never the hash
    readonly_fields = ("kiosk", "prefix", "created_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Отозвать выбранные токены")
    def revoke(self, request, queryset):
        for token in queryset:
            token.revoke()


class IikoConnectionForm(SecretFieldsForm):
    secret_fields = IikoConnection.SECRET_FIELDS

    class Meta:
        model = IikoConnection
        fields = "__all__"


@admin.register(IikoConnection)
class IikoConnectionAdmin(RussianAdmin):
    form = IikoConnectionForm
    list_display = ("name", "address", "created_at")

    @admin.display(description="адрес iiko Cloud API", ordering="base_url")
    def address(self, connection: IikoConnection) -> str:
        return without_credentials(connection.base_url, mark="***")


@admin.register(LogEntry)
class LogEntryAdmin(HistoryAdmin):
    """Who changed what in the admin (Django records it); history, so read-only."""

    list_display = ("action_time", "user", "content_type", "object_repr", "action_flag", "change_message")
    list_filter = ("action_flag", "content_type")
    search_fields = ("object_repr", "change_message", "user__username")
    list_select_related = ("user", "content_type")
    date_hierarchy = "action_time"
