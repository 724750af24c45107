"""Model fields of our own."""

from __future__ import annotations

from typing import Any

from django.db import models

from nekassir import wirejson


class ExactJSONField(models.TextField):
    """JSON stored as text with Decimals kept exact (see ``nekassir.wirejson``).

    For requests that may be re-sent to a device after a crash: what goes out the second time is
    byte-for-byte the amount that went out the first time.
    """

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


class LanURLField(models.URLField):
    """An address on the venue LAN: typed without a scheme it means http:// (devices speak plain HTTP)."""

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"assume_scheme": "http", **kwargs})


class CloudURLField(models.URLField):
    """An address on the internet (iiko Cloud): without a scheme it means https://."""

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"assume_scheme": "https", **kwargs})
