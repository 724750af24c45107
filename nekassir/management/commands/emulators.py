"""python manage.py emulators: every device emulator on 127.0.0.1 (ATOL on 16732, KKM Server on 5893,
DualConnector on 9015, iiko on 8765, the marking check service on 8766; ports from settings / environment),
until Ctrl-C or SIGTERM. ATOL and the check service share one marking operator (the code table)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from core.emulator_http import EmulatorServer
from nekassir.emulators import EmulatorDelays, build_emulators


class Command(BaseCommand):
    help = "Запускает эмуляторы ККТ, терминалов, iiko и службы проверки кодов маркировки на 127.0.0.1."

    def add_arguments(self, parser):
        parser.add_argument("--state-dir", default=str(settings.EMULATOR_STATE_DIR))
        parser.add_argument("--print-delay", type=float, default=1.0, help="секунд на печать документа")
        parser.add_argument("--card-delay", type=float, default=3.0, help="секунд на гостя с картой")
        parser.add_argument("--iiko-delay", type=float, default=1.0, help="секунд на создание заказа в iiko")
        for name, port in settings.EMULATOR_PORTS.items():
            parser.add_argument(f"--{name}-port", type=int, default=port)
        parser.add_argument("--only", nargs="*", choices=list(settings.EMULATOR_PORTS), help="только эти")
        parser.add_argument("--verbose-http", action="store_true")

    def handle(self, *args, **options):
        delays = EmulatorDelays(options["print_delay"], options["card_delay"], options["iiko_delay"])
        apps = build_emulators(Path(options["state_dir"]), delays)
        servers = []
        for name, app in apps.items():
            if options["only"] and name not in options["only"]:
                continue
            port = options[f"{name}_port"]
            server = EmulatorServer(app, settings.EMULATOR_HOST, port, verbose=options["verbose_http"]).start()
            servers.append(server)
            self.stdout.write(f"{name}: {server.url}")
        self.stdout.flush()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        for server in servers:
            server.stop()
        self.stdout.write("emulators stopped")
