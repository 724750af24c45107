"""python manage.py simulate --orders N --kiosks K: kiosks placing orders through the API (demo, load).

Talks to a running server over HTTP with a fresh token per kiosk (by default the one ``make run`` serves:
``PORT``, as there); prints what became of every order and how long it took. When nothing answers it says so in
one line and exits non-zero.
"""

from __future__ import annotations

import statistics

from django.core.management.base import BaseCommand, CommandError

from core.models import Kiosk, KioskToken
from iiko import emulator as menu
from marking.models import MarkedProduct
from nekassir.demo import MintingFailed, marking_emulator_url, mint_codes
from nekassir.simulation import (
    FINAL,
    NO_ANSWER,
    MarkingCodes,
    ServerMissing,
    SimulatedKiosk,
    probe_kiosk_api,
    probe_server,
    run,
    served_url,
)


class Command(BaseCommand):
    help = "Имитирует киоски, отправляющие заказы через API."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=10)
        parser.add_argument("--kiosks", type=int, default=1)
        parser.add_argument("--url", default=None, help="адрес сервера; по умолчанию тот, что у make run (PORT)")
        parser.add_argument("--timeout", type=float, default=180, help="секунд на один заказ")

    def handle(self, *args, orders: int, kiosks: int, url: str | None, timeout: float, **options):
        chosen = list(Kiosk.objects.filter(active=True).order_by("code")[:kiosks])
        if len(chosen) < kiosks or kiosks < 1 or orders < 1:
            raise CommandError(f"Нужно {kiosks} активных киосков (есть {len(chosen)}) и хотя бы один заказ")
        try:
            url = url or served_url()
            probe_server(url)  # before any token is issued
            products, marking = self._marked_goods()
            players = [SimulatedKiosk(k.code, KioskToken.issue(k), products, marking=marking) for k in chosen]
            probe_kiosk_api(url, players[0].code, players[0].token)
        except ServerMissing as exc:
            raise CommandError(str(exc)) from None
        counts = run(players, url, orders, timeout)
        durations = [seconds for p in players for _, seconds in p.results if seconds]
        for status, count in sorted(counts.items()):
            self.stdout.write(f"{status}: {count}")
        if durations:
            self.stdout.write(f"время заказа: медиана {statistics.median(durations):.1f} с, "
                              f"максимум {max(durations):.1f} с")
        if not FINAL & set(counts):
            lost = f"сервер {url} перестал отвечать" if NO_ANSWER in counts else f"сервер {url} их не принял"
            raise CommandError(f"Ни один заказ не завершён: {lost}")

    def _marked_goods(self) -> tuple[list[dict], MarkingCodes | None]:
        """The menu, and codes for its marked products minted on the check-service emulator; when it cannot
        mint them the marked products are left out (the API would refuse them without codes)."""
        gtins = {str(m.product_id): m.gtins[0] for m in MarkedProduct.objects.all() if m.gtins}
        marked = {str(m.product_id) for m in MarkedProduct.objects.all()}
        if not marked & {p["id"] for p in menu.DEMO_PRODUCTS}:
            return menu.DEMO_PRODUCTS, None
        base_url = marking_emulator_url()
        marking = MarkingCodes(gtins, lambda gtin, count: mint_codes(base_url, gtin, "valid", count))
        try:
            marking.prefill()  # the first batch: is the emulator there?
        except MintingFailed as exc:
            self.stdout.write(f"маркированные товары не в заказах: {exc}")
            return [p for p in menu.DEMO_PRODUCTS if p["id"] not in marked], None
        return [p for p in menu.DEMO_PRODUCTS if p["id"] not in marked or p["id"] in gtins], marking
