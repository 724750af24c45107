"""Model fields of our own."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django import forms
from django.core import validators
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.deconstruct import deconstructible

from core import wirejson
from core.addresses import has_credentials, without_credentials

if TYPE_CHECKING:
    # django-stubs makes model fields generic (type written, type read) and mixins need their base to call
    # super(); Django's own classes take no subscript at run time, hence these names for the checker only.
    _TextField = models.TextField[Any, Any]
    _URLField = models.URLField[str, str]
    _WidgetMixinBase = forms.Widget
else:
    _TextField = models.TextField
    _URLField = models.URLField
    _WidgetMixinBase = object


class ExactJSONField(_TextField):
    """JSON stored as text with Decimals kept exact (see ``core.wirejson``).

    For requests that may be re-sent to a device after a crash: what goes out the second time is
    byte-for-byte the amount that went out the first time.
    """

    # Read by the django-stubs plugin for the model attribute and create()/filter() arguments: any JSON value.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else wirejson.loads(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            return wirejson.loads(value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else wirejson.dumps(value)

    def value_to_string(self, obj: Any) -> str:
        return wirejson.dumps(self.value_from_object(obj))


@deconstructible
class NoCredentialsInAddress:
    """Refuses ``http://user:password@host``: the login and password go in their own fields, never shown back
    (``core.addresses`` says why)."""

    def __init__(self, message: str):
        self.message = message

    def __call__(self, value: str) -> None:
        if has_credentials(value):
            raise ValidationError(self.message, code="credentials_in_address")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoCredentialsInAddress) and other.message == self.message


LAN_CREDENTIALS = ("Не пишите логин и пароль в адресе: их было бы видно в списке киосков, журналах и блокировках. "
                   "Оставьте в адресе только http://адрес:порт, а логин и пароль впишите в поля пользователя "
                   "и пароля этого устройства в настройках киоска.")
CLOUD_CREDENTIALS = ("Не пишите логин и пароль в адресе iiko: их было бы видно в списках и журналах. Оставьте "
                     "только https://адрес, а ключи впишите в поля apiLogin (v1) или appId, clientSecret "
                     "и apiKey (v2) этого подключения.")


class HidesCredentials(_WidgetMixinBase):
    """A widget mixin: shows a stored address with ``***`` in place of its credentials. The page never carries
    them, and the form saved as shown is refused by the validator, so credentials a device may still need are
    never dropped silently: the engineer moves them to the login and password fields."""

    def format_value(self, value: Any) -> str | None:
        return super().format_value(without_credentials(value, mark="***") if isinstance(value, str) else value)


@functools.cache
def _hiding(widget_class: type) -> type:
    """``widget_class`` with ``HidesCredentials`` (the admin's own URL widget too: its «Сейчас:» link)."""
    if issubclass(widget_class, HidesCredentials):
        return widget_class
    return type(f"{widget_class.__name__}HidingCredentials", (HidesCredentials, widget_class), {})


class AddressFormField(forms.URLField):
    """Checks for credentials before anything else: ``user:password@host`` typed without a scheme would
    otherwise be read as the scheme ``user`` and refused as a bad address, not for what it is."""

    assume_scheme: str  # set by forms.URLField.__init__ (Django 5.0+); django-stubs 5.2 does not declare it

    def __init__(self, *, credentials_message: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.credentials_message = credentials_message

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and has_credentials(value if "://" in value else f"{self.assume_scheme}://{value}"):
            raise ValidationError(self.credentials_message, code="credentials_in_address")
        return super().to_python(value)


class _AddressField(_URLField):
    """An address field that refuses a login or password in it and never shows a stored one (issue 16)."""

    assume_scheme = "http"
    credentials_message = ""

    # form_class stays in **kwargs: it is always AddressFormField here, whatever the caller asked for.
    def formfield(self, **kwargs: Any) -> forms.Field | None:  # type: ignore[override]
        widget: type[forms.Widget] | forms.Widget = kwargs.get("widget", forms.URLInput)
        if isinstance(widget, type):
            kwargs["widget"] = _hiding(widget)
        else:
            kwargs["widget"] = _hiding(type(widget))(attrs=widget.attrs)
        return super().formfield(**{"assume_scheme": self.assume_scheme, **kwargs, "form_class": AddressFormField,
                                    "credentials_message": self.credentials_message})


class LanURLField(_AddressField):
    """An address on the venue LAN: typed without a scheme it means http:// (devices speak plain HTTP)."""

    credentials_message = LAN_CREDENTIALS
    default_validators = [validators.URLValidator(), NoCredentialsInAddress(LAN_CREDENTIALS)]


class CloudURLField(_AddressField):
    """An address on the internet (iiko Cloud): without a scheme it means https://."""

    assume_scheme = "https"
    credentials_message = CLOUD_CREDENTIALS
    default_validators = [validators.URLValidator(), NoCredentialsInAddress(CLOUD_CREDENTIALS)]
