"""python manage.py demo [--json] [--reset]: the demo venue wired to the emulators, made once and then left as
it is (``--reset``: made again); prints the same working credentials every run."""

from __future__ import annotations

from core.management.jsoncommand import JsonCommand
from nekassir.demo import CREDENTIALS_FILE, DEMO_PIN, addresses_elsewhere, demo_marking_codes, seed_demo


class Command(JsonCommand):
    help = "Создаёт демо-заведение, подключённое к эмуляторам, и печатает рабочие учётные данные."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="только JSON на stdout")
        parser.add_argument("--reset", action="store_true",
                            help="заново: адреса эмуляторов этого окружения, PIN, новые пароль менеджера и токены "
                                 "(прежние отзываются, менеджер выходит из панели)")

    def handle(self, *args, **options):
        result = seed_demo(reset=options["reset"])
        # The venue is left as it is; say so when its devices are elsewhere than this environment's emulators.
        notes = self.stderr if options["json"] else self.stdout
        for line in addresses_elsewhere():
            notes.write(line)
        # Minted after the seed's transaction: codes in the stated state now (or null and why).
        result["marking_codes"], reason = demo_marking_codes()
        result["marking_codes_error"] = reason or None
        if options["json"]:
            self.emit(result)
            return
        manager = result["manager"]
        if manager["password"] is None:
            self.stdout.write(f"Логин менеджера: {manager['username']}  пароль задан не демо и не изменён; "
                              f"новый пароль демо: manage.py demo --reset")
        else:
            self.stdout.write(f"Логин менеджера: {manager['username']}  пароль: {manager['password']}  "
                              f"(хранится в {CREDENTIALS_FILE} папки данных)")
        for kiosk in result["kiosks"]:
            self.stdout.write(f"Киоск {kiosk['code']}  токен API: {kiosk['token']}  PIN сервисного меню: {DEMO_PIN}")
        if result["marking_codes"] is None:
            self.stdout.write(f"Коды маркировки не выпущены: {reason}")
        else:
            for product_id, states in result["marking_codes"].items():
                counts = ", ".join(f"{status}: {len(codes)}" for status, codes in states.items())
                self.stdout.write(f"Коды маркировки {product_id}: {counts} (полностью — в demo --json)")
