"""``manage.py check`` of our own, registered by ``CoreConfig.ready()`` (Django's place for checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db import DatabaseError, models

from core.addresses import has_credentials, without_credentials
from core.fields import CloudURLField, LanURLField
from core.models import IikoConnection, Kiosk


@checks.register(checks.Tags.security)
def stored_addresses_without_credentials(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """``manage.py check``: a row saved before the fields refused credentials (or written around the forms)."""
    found: list[checks.CheckMessage] = []
    try:
        for model, name in ((Kiosk, "code"), (IikoConnection, "name")):
            address_fields = [f for f in model._meta.fields if isinstance(f, (LanURLField, CloudURLField))]
            for row in model.objects.only(name, *(f.name for f in address_fields)):
                found += [_credentials_warning(model, row, name, f) for f in address_fields
                          if has_credentials(getattr(row, f.name))]
    except DatabaseError:
        return []  # no database yet (before migrate), or it does not answer: nothing to say about its rows
    return found


def _credentials_warning(
    model: type[models.Model], row: models.Model, name: str, field: models.Field[Any, Any]
) -> checks.Warning:
    where = "киоска" if model._meta.model_name == "kiosk" else "подключения iiko"
    return checks.Warning(
        f"В поле «{field.verbose_name}» {where} {getattr(row, name)} записаны логин и пароль "
        f"({without_credentials(getattr(row, field.name), mark='***')}): их видно везде, где виден адрес.",
        hint="Откройте его в админке, перенесите логин и пароль в их поля, а в адресе оставьте только "
             "схему, адрес и порт.",
        obj=model, id="nekassir.W001",
    )
