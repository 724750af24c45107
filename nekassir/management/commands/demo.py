"""python manage.py demo [--json]: seeds (idempotently) the demo venue wired to the emulators."""

from __future__ import annotations

from core.management.jsoncommand import JsonCommand
from nekassir.demo import DEMO_PIN, seed_demo


class Command(JsonCommand):
    help = "Создаёт демо-заведение, подключённое к эмуляторам, и печатает рабочие учётные данные."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="только JSON на stdout")

    def handle(self, *args, **options):
        result = seed_demo()
        if options["json"]:
            self.emit(result)
            return
        manager = result["manager"]
        self.stdout.write(f"Логин менеджера: {manager['username']}  пароль: {manager['password']}")
        for kiosk in result["kiosks"]:
            self.stdout.write(f"Киоск {kiosk['code']}  токен API: {kiosk['token']}  PIN сервисного меню: {DEMO_PIN}")
