"""python manage.py demo [--json]: seeds (idempotently) the demo venue wired to the emulators."""

from __future__ import annotations

from core.management.jsoncommand import JsonCommand
from nekassir.demo import DEMO_PIN, demo_marking_codes, seed_demo


class Command(JsonCommand):
    help = "Создаёт демо-заведение, подключённое к эмуляторам, и печатает рабочие учётные данные."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="только JSON на stdout")

    def handle(self, *args, **options):
        result = seed_demo()
        # Minted after the seed's transaction: codes in the stated state now (or null and why).
        result["marking_codes"], reason = demo_marking_codes()
        result["marking_codes_error"] = reason or None
        if options["json"]:
            self.emit(result)
            return
        manager = result["manager"]
        self.stdout.write(f"Логин менеджера: {manager['username']}  пароль: {manager['password']}")
        for kiosk in result["kiosks"]:
            self.stdout.write(f"Киоск {kiosk['code']}  токен API: {kiosk['token']}  PIN сервисного меню: {DEMO_PIN}")
        if result["marking_codes"] is None:
            self.stdout.write(f"Коды маркировки не выпущены: {reason}")
        else:
            for product_id, states in result["marking_codes"].items():
                counts = ", ".join(f"{status}: {len(codes)}" for status, codes in states.items())
                self.stdout.write(f"Коды маркировки {product_id}: {counts} (полностью — в demo --json)")
