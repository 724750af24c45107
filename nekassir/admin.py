from django import forms
from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group

from core.addresses import without_credentials
from core.admin import RussianAdmin
from core.models import Kiosk
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
class KioskAdmin(RussianAdmin):
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


class GroupAdmin(RussianAdmin, auth_admin.GroupAdmin):
    accusative = "группу"  # Django's own name is «группа»: «Добавить группу», «Выберите группу для изменения»


admin.site.unregister(Group)
admin.site.register(Group, GroupAdmin)


# The device locks and the journal are registered in core/admin.py; the service menu's models (orders,
# refunds, tokens, iiko) in nekassir/panel/admin_registrations.py.
import nekassir.panel.admin_registrations  # noqa: E402,F401
