"""python manage.py iiko <kiosk> check (JSON on stdout, non-zero exit on failure)."""

from __future__ import annotations

from core.management.jsoncommand import JsonCommand
from iiko.checks import check_iiko


class Command(JsonCommand):
    help = "Проверка подключения киоска к iiko (JSON на stdout)."

    def add_arguments(self, parser):
        parser.add_argument("kiosk")
        parser.add_argument("action", choices=["check"])

    def handle(self, *args, kiosk: str, action: str, **options):
        report = check_iiko(self.get_kiosk(kiosk))
        if not report.pop("ok"):
            self.fail({"action": action, **report})
        self.emit({"ok": True, "action": action, **report})
