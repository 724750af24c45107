"""Kiosks placing orders through the kiosk API over HTTP (``python manage.py simulate``): demos and load."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import httpx

FINAL = {"completed", "cancelled", "failed", "not_delivered", "needs_attention"}
NO_ANSWER = "no_answer"  # an order whose POST or polling got no HTTP answer (the server went away)
# Where ``make run`` (scripts/run.py) serves: this host, the port in PORT.
SERVED_HOST, SERVED_PORT = "127.0.0.1", 8000
PROBE_TIMEOUT = 5.0


class ServerMissing(Exception):
    """The kiosk API is not there to talk to; the message is one Russian line saying what is wrong."""


def served_url(environ: Mapping[str, str] = os.environ) -> str:
    """The address ``make run`` serves with this environment (``PORT``, default 8000)."""
    raw = environ.get("PORT", "").strip() or str(SERVED_PORT)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ServerMissing(f"PORT={raw!r}: нужен номер порта от 1 до 65535 (тот, на котором работает make run)")
    return f"http://{SERVED_HOST}:{int(raw)}"


def _why(exc: httpx.HTTPError) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def probe_server(base_url: str) -> None:
    """Raises ``ServerMissing`` unless something answers HTTP at ``base_url``."""
    try:
        httpx.get(f"{base_url.rstrip('/')}/health/", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        raise ServerMissing(f"Сервер {base_url} не отвечает ({_why(exc)}): запустите make run (с тем же PORT) "
                            f"или укажите адрес в --url") from None


def probe_kiosk_api(base_url: str, code: str, token: str) -> None:
    """Raises ``ServerMissing`` unless ``base_url`` is the kiosk API of this database (it knows ``token``)."""
    try:
        answer = httpx.get(f"{base_url.rstrip('/')}/api/v1/orders/{uuid.UUID(int=0)}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        raise ServerMissing(f"Сервер {base_url} не отвечает ({_why(exc)})") from None
    if answer.status_code == 401:
        raise ServerMissing(f"Сервер {base_url} не принял токен киоска {code}: он работает с другой базой данных, "
                            f"чем эта команда (NEKASSIR_DATA_DIR, DATABASE_URL)")
    if answer.status_code != 404 or not answer.headers.get("content-type", "").startswith("application/json"):
        raise ServerMissing(f"По адресу {base_url} отвечает не API киосков Некассира (HTTP {answer.status_code})")


class MarkingCodes:
    """Fresh valid marking codes for the marked products (issue 13), minted in batches on the check-service
    emulator by ``mint(gtin, count)``; each code is handed out once, so no two orders carry the same unit."""

    def __init__(self, gtins: dict[str, str], mint: Callable[[str, int], list[str]], batch: int = 50):
        self.gtins = gtins  # marked product id -> the GTIN its codes carry
        self._mint = mint
        self._batch = batch
        self._stock: dict[str, list[str]] = {product_id: [] for product_id in gtins}
        self._lock = threading.Lock()

    def prefill(self) -> None:
        """A first batch of every product's codes (raises what ``mint`` raises: the emulator is not there)."""
        for product_id in self.gtins:
            self.take(product_id, 0)

    def take(self, product_id: str, count: int) -> list[str]:
        with self._lock:
            stock = self._stock[product_id]
            if len(stock) < count or not stock:
                stock.extend(self._mint(self.gtins[product_id], max(self._batch, count)))
            taken, self._stock[product_id] = stock[:count], stock[count:]
        return taken


@dataclass
class SimulatedKiosk:
    code: str
    token: str
    products: list[dict]
    results: list[tuple[str, float]] = field(default_factory=list)  # (final status, seconds)
    marking: MarkingCodes | None = None  # codes for the marked products among ``products``


def random_order(products: list[dict], rng: random.Random, marking: MarkingCodes | None = None) -> dict:
    """A random order of 1-3 products; a marked product's line carries one code per unit (sold by the piece)."""
    lines, total = [], Decimal("0")
    for product in rng.sample(products, k=min(len(products), rng.randint(1, 3))):
        quantity: int | Decimal = rng.randint(1, 2)
        price = Decimal(product["price"])
        line = {"product_id": product["id"], "name": product["name"], "price": f"{price:.2f}",
                "quantity": str(quantity), "vat": product["vat"], "modifiers": []}
        if product.get("sizes"):
            size = product["sizes"][0]
            line["size_id"], line["price"] = size["id"], size["price"]
            price = Decimal(size["price"])
        if product.get("weighed"):
            line["unit"], line["quantity"] = "kilogram", "0.250"
            quantity = Decimal("0.250")
        if marking is not None and product["id"] in marking.gtins:
            line["marking_codes"] = marking.take(product["id"], int(quantity))
        total += (price * Decimal(quantity)).quantize(Decimal("0.01"))
        lines.append(line)
    return {"id": str(uuid.uuid4()), "lines": lines, "total": f"{total:.2f}", "payment": "card",
            "order_type": rng.choice(["takeaway", "dine_in"])}


def play(kiosk: SimulatedKiosk, base_url: str, orders: int, timeout: float, seed: int) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {kiosk.token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for _ in range(orders):
            body = random_order(kiosk.products, rng, kiosk.marking)
            started = time.monotonic()
            try:
                answer = http.post("/api/v1/orders", json=body)
                if answer.status_code not in (200, 201):
                    kiosk.results.append((f"http_{answer.status_code}", 0.0))
                    continue
                status = answer.json()["status"]
                while status not in FINAL and time.monotonic() - started < timeout:
                    time.sleep(0.3)
                    status = http.get(f"/api/v1/orders/{body['id']}").json()["status"]
            except httpx.HTTPError:  # counted, not a thread's traceback
                kiosk.results.append((NO_ANSWER, 0.0))
                continue
            kiosk.results.append((status if status in FINAL else f"still_{status}", time.monotonic() - started))


def run(kiosks: list[SimulatedKiosk], base_url: str, orders: int, timeout: float) -> Counter:
    per_kiosk = [orders // len(kiosks) + (1 if i < orders % len(kiosks) else 0) for i in range(len(kiosks))]
    threads = [threading.Thread(target=play, args=(k, base_url, n, timeout, i)) for i, (k, n) in
               enumerate(zip(kiosks, per_kiosk, strict=True))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Counter(status for k in kiosks for status, _ in k.results)
