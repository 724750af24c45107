from django import forms
from django.contrib import admin
from django.contrib.auth.hashers import make_password

from core.addresses import without_credentials
from core.models import DeviceLock, Event, Kiosk
from nekassir.admin_secrets import SecretFieldsForm


class KioskForm(SecretFieldsForm):
    secret_fields = Kiosk.SECRET_FIELDS
    service_pin = forms.CharField(
        label="Новый PIN сервисного меню", required=False, min_length=4, max_length=32,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Открывает сервисное меню на экране киоска. Рекомендуем PIN не короче 6 цифр: четыре цифры "
                  "подбираются быстрее. Хранится только хеш; пусто — не менять.",
    )

    class Meta:
        model = Kiosk
        fields = "__all__"

    def clean_service_pin(self) -> str:
        pin = self.cleaned_data.get("service_pin", "")
        if pin and not pin.isdigit():
            raise forms.ValidationError("PIN — только цифры.")
        return pin

    def save(self, commit: bool = True) -> Kiosk:
        if any(name in self.changed_data and not self.cleaned_data.get(name) for name in Kiosk.REQUISITE_FIELDS):
            # A requisite cleared by hand is read again from the register's registration before the next receipt.
            self.instance.requisites_fn_number = ""
        kiosk = super().save(commit=commit)
        if self.cleaned_data.get("service_pin"):
            kiosk.service_pin_hash = make_password(self.cleaned_data["service_pin"])
            if commit:
                kiosk.save(update_fields=["service_pin_hash"])
        return kiosk


@admin.register(Kiosk)
class KioskAdmin(admin.ModelAdmin):
    form = KioskForm
    list_display = ("code", "name", "active", "has_register", "atol_address", "terminal_transport",
                    "register_ready", "terminal_ready")
    list_filter = ("active", "has_register", "terminal_transport")
    search_fields = ("code", "name")
    readonly_fields = ("fn_number", "register_ready", "register_problem", "terminal_ready", "terminal_problem",
                       "registration_info", "requisites_fn_number")

    @admin.display(description="адрес ATOL Web Server", ordering="atol_url")
    def atol_address(self, kiosk: Kiosk) -> str:
        return without_credentials(kiosk.atol_url, mark="***")  # plain text: a link would carry the address


@admin.register(DeviceLock)
class DeviceLockAdmin(admin.ModelAdmin):
    list_display = ("shown_key", "holder", "purpose", "acquired_at", "expires_at")
    readonly_fields = ("shown_key", "holder", "purpose", "acquired_at", "expires_at")
    exclude = ("key",)

    @admin.display(description="ключ", ordering="key")
    def shown_key(self, lock: DeviceLock) -> str:
        return without_credentials(lock.key, mark="***")  # a row keyed before keys were cleaned (issue 16)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "kiosk", "user", "message")
    list_filter = ("action", "kiosk")
    search_fields = ("message", "object_ref")

    def has_change_permission(self, request, obj=None):
        return False  # the journal is history: never edited

    def has_delete_permission(self, request, obj=None):
        return False


# The service menu's models (orders, refunds, tokens, iiko) are registered there.
import nekassir.panel.admin_registrations  # noqa: E402,F401
