"""Base for commands that print one JSON document on stdout and exit non-zero on failure."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.models import Kiosk


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


class JsonCommand(BaseCommand):
    def emit(self, payload: dict[str, Any]) -> None:
        self.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=_default))

    def fail(self, payload: dict[str, Any], exit_code: int = 1) -> None:
        self.emit({"ok": False, **payload})
        sys.stdout.flush()
        sys.exit(exit_code)

    def get_kiosk(self, code: str) -> Kiosk:
        try:
            return Kiosk.objects.get(code=code)
        except Kiosk.DoesNotExist:
            raise CommandError(f"Киоск {code!r} не найден") from None
