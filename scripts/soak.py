"""Fault-injection soak (issue 6): ``make soak`` (≥ 1,000 orders) and ``make soak-short`` (CI, ~100 orders).

Five kiosks (K1–K4 on KKM Server terminals 1–4, K5 on DualConnector; each its own ATOL register) place
orders through the kiosk API of a real gunicorn, over HTTP. Real q2 clusters run the checkouts (the device
cluster, killed with SIGKILL — its whole process group — at random moments and restarted, and the
default cluster for the schedules). The emulators run in this process on free ports, with small device
delays, and every one of them injects random faults. About a tenth of the orders carry marked goods (issue 13:
the demo's water and ice cream, one code per unit minted on the check-service emulator, some a code the
marking operator says is sold, some a code sold before and returned since), and the marking faults of the
register and the check service join the mix for them. Manual shift closes (``manage.py kkt K close``),
automatic ones (the register clock advanced towards and past 24 hours) and refunds (``request_refund``,
the product's own code, called here after ``django.setup()`` with the same settings) are interleaved.

Then every fault is cleared, recovery is given time (``recover()`` is called here too, every few seconds,
besides the every-minute schedule), every open shift is closed, and the invariants of DESIGN.md are
checked against the emulators' journals and the database (``scripts/soak_checks.py``). Prints a table of
the faults injected and of the invariants checked; exits 1 on any violation (2 when the run itself broke).

    python -m scripts.soak [--short] [--orders N] [--kills N] [--db auto|pg|sqlite] [--seed N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from scripts import soak_stack as stack

KIOSKS = ["K1", "K2", "K3", "K4", "K5"]
FINAL = {"completed", "cancelled", "failed", "not_delivered"}


@dataclass
class Plan:
    orders: int
    kills: int
    manual_closes: int
    clock_advances: int
    refunds: int
    fault_rate: float  # probability that an order gets a fault armed just before it is posted
    order_wait: float  # how long a kiosk waits for an order's end before the next guest
    drain_timeout: float
    print_delay: float = 0.05
    card_delay: float = 0.2
    iiko_delay: float = 0.1
    marked_rate: float = 0.10  # orders with marked goods (issue 13)
    sold_code_rate: float = 0.15  # of those, orders with one code the marking operator says is sold
    reuse_rate: float = 0.3  # of those, orders with one code sold before and returned since (or never sold)
    marked_refund_rate: float = 0.4  # refunds that pick a paid order with marked goods when there is one


PLANS = {
    "full": Plan(orders=1000, kills=22, manual_closes=10, clock_advances=4, refunds=60, fault_rate=0.35,
                 order_wait=15, drain_timeout=300),
    "short": Plan(orders=100, kills=3, manual_closes=2, clock_advances=1, refunds=8, fault_rate=0.35,
                  order_wait=12, drain_timeout=170),
}


# --- the faults ------------------------------------------------------------------------------------
# (emulator, fault, extra fields, weight). ``device`` is filled in per kiosk.
ATOL_FAULTS = [
    ("atol", "paper_out", {}, 3), ("atol", "paper_out_after_write", {}, 3), ("atol", "cover_open", {}, 1),
    ("atol", "no_connection", {}, 1), ("atol", "blocked_then_ready", {"blocked_seconds": 1.5}, 2),
    ("atol", "blocked_then_error", {"blocked_seconds": 1.0}, 2), ("atol", "lost_post_answer", {}, 3),
    ("atol", "lost_get_answer", {}, 3), ("atol", "fn_error", {}, 2),
    # The register's clock passes expiredTime between our shift check and the sell (error 68).
    ("atol", "shift_expires_before_next_sell", {}, 2),
]
TERMINAL_FAULTS = [
    ("terminal", "decline", {}, 4), ("terminal", "insufficient_funds", {}, 2), ("terminal", "no_connection", {}, 2),
    ("terminal", "memory_full", {}, 1), ("terminal", "timeout", {}, 2), ("terminal", "timeout", {"approved": False}, 1),
    ("terminal", "lost_response", {}, 3), ("terminal", "lost_response", {"approved": False}, 1),
    ("terminal", "settlement_fails", {}, 2),
    # A guest holds the terminal (or a dead worker's payment still runs): other commands are told "busy".
    ("terminal", "busy", {"seconds": 2}, 1),
]
IIKO_FAULTS = [
    ("iiko", "creation_timeout", {}, 3), ("iiko", "http_500", {}, 2), ("iiko", "http_500", {"processed": True}, 2),
    ("iiko", "slow", {"seconds": 3}, 2), ("iiko", "lost_answer", {}, 2), ("iiko", "front_offline", {}, 1),
    # Every attempt of an order fails: it ends not_delivered (paid, fiscalised, staff must act).
    ("iiko", "creation_timeout", {"burst": True, "count": 3}, 1),
]
FAULTS = ATOL_FAULTS + TERMINAL_FAULTS + IIKO_FAULTS
# Marked goods (issue 13), in the mix only for an order that carries them: the register's validation (the
# operator unreachable: offline, refused at MARKING_OFFLINE_SALE=refuse; or it says sold / blocked) and the
# check service (down, slower than the client's timeout, the answer lost). ``marking`` faults hit any kiosk.
MARKING_FAULTS = [
    ("atol", "ism_unreachable", {}, 5), ("atol", "code_sold", {}, 5), ("atol", "code_blocked", {}, 4),
    ("marking", "unavailable", {}, 6), ("marking", "slow", {"seconds": 4}, 4), ("marking", "lost_answer", {}, 6),
]

# Faults armed together for one order: (label, [(emulator, fault, extra)], weight).
# - the sale's answer is lost and the emergency reversal that would resolve it is refused, or finds no bank
#   link: the sale stays unknown (terminal blocked, order needs attention) until recovery gets an answer;
#   on KKM Server a restart forgetting its results (``kkm_restart``) is what leaves GetRezult without one;
# - iiko creates the order, the answer is lost, and by_id does not show it for a while: one order only.
COMBOS = [
    ("lost sale + reversal refused", [("terminal", "lost_response", {}),
                                      ("terminal", "reversal_refused", {"operation": "reversal"})], 3),
    ("lost sale + no bank link on the reversal", [("terminal", "lost_response", {}),
                                                  ("terminal", "no_connection", {"operation": "reversal"})], 2),
    ("lost create answer + invisible", [("iiko", "lost_create_answer", {}),
                                        ("iiko", "invisible_for", {"seconds": 4})], 3),
]


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    placed: int = 0
    posted: Counter = field(default_factory=Counter)  # HTTP status of the first answer to each POST
    ended_in_wait: Counter = field(default_factory=Counter)  # status each kiosk saw when it stopped waiting
    faults_armed: Counter = field(default_factory=Counter)
    kills: list[float] = field(default_factory=list)
    restarts: int = 0
    kkm_restarts: int = 0
    by_hand: Counter = field(default_factory=Counter)  # unknown card operations a manager resolved by hand
    manual_closes: Counter = field(default_factory=Counter)
    clock_advances: list[str] = field(default_factory=list)
    refunds: Counter = field(default_factory=Counter)
    marked: Counter = field(default_factory=Counter)  # orders with marked goods, by what they carry
    recoveries: int = 0
    scans: int = 0
    errors: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bump(self, counter: str, key: str, n: int = 1) -> None:
        with self.lock:
            getattr(self, counter)[key] += n

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)
        print(f"[soak] ERROR {text}", flush=True)


class Soak:
    def __init__(self, plan: Plan, args: argparse.Namespace):
        self.plan = plan
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = Stats()
        self.stop_chaos = threading.Event()
        self.order_lock = threading.Lock()
        self.cluster_lock = threading.Lock()
        self.kiosks: dict[str, Any] = {}
        self.tokens: dict[str, str] = {}
        self.terminal_device: dict[str, str] = {}
        self.iiko_group: dict[str, str] = {}
        self.orders: dict[str, str] = {}  # order id -> kiosk
        self.card_unavailable: set[str] = set()  # orders refused 503 card_unavailable (must not be saved)
        # Marked goods: product id -> GTIN, fresh valid codes (minted in batches), the codes minted "sold",
        # the order each code was last put in (a code goes in a new order only once that order let it go).
        self.marking_gtins: dict[str, str] = {}
        self.codes: Any = None
        self.sold_codes: set[str] = set()
        self.last_order_of: dict[str, str] = {}
        self.marked_orders: dict[str, dict[str, Any]] = {}  # order id -> {"sold_code", "reused", "units"}
        self.emulators: stack.Emulators | None = None
        self.procs: stack.Processes | None = None

    # ------------------------------------------------------------------------------------ helpers
    def log(self, text: str) -> None:
        elapsed = time.monotonic() - self.stats.started
        print(f"[soak {elapsed:7.1f}s] {text}", flush=True)

    def thresholds(self, count: int, low: float = 0.05, high: float = 0.92) -> list[int]:
        """``count`` order counts, spread over the run with jitter, at which something happens."""
        if count <= 0:
            return []
        n = self.plan.orders
        step = (high - low) / count
        return sorted(int(n * (low + step * (i + self.rng.random()))) for i in range(count))

    def wait_for_orders(self, target: int) -> bool:
        while not self.stop_chaos.is_set():
            if self.stats.placed >= target:
                return True
            time.sleep(0.1)
        return False

    @staticmethod
    def db_done() -> None:
        from django.db import connections

        connections.close_all()

    # ------------------------------------------------------------------------------------ setup
    def setup_venue(self) -> None:
        from django.core.management import call_command

        from core.models import IikoConnection, Kiosk, KioskToken
        from iiko import emulator as menu

        call_command("migrate", verbosity=0, interactive=False)
        emulators = self.emulators
        connection = IikoConnection.objects.create(name="soak iiko", base_url=emulators.url("iiko"),
                                                   api_login=menu.DEMO_API_LOGIN)
        for number, code in enumerate(KIOSKS, start=1):
            fields: dict[str, Any] = {
                "name": f"Киоск {code}", "has_register": True, "atol_url": emulators.url("atol"),
                "atol_device_id": code, "iiko": connection, "iiko_organization_id": menu.ORG_ID,
                "iiko_terminal_group_id": menu.TERMINAL_GROUP_ID if number <= 3 else menu.TERMINAL_GROUP_2_ID,
                "iiko_payment_type_id": menu.CARD_PAYMENT_TYPE_ID,
                "iiko_order_type_takeaway_id": menu.ORDER_TYPE_TAKEAWAY_ID,
                "iiko_order_type_dine_in_id": menu.ORDER_TYPE_DINE_IN_ID,
                "iiko_order_type_pickup_id": menu.ORDER_TYPE_PICKUP_ID,
            }
            if code == "K5":
                fields.update(terminal_transport="dualconnector", terminal_kind="dualconnector",
                              dc_url=emulators.url("dualconnector") + "/")
                self.terminal_device[code] = "1"
            else:
                fields.update(terminal_transport="kkm", terminal_kind="sberbank", kkm_url=emulators.url("kkm"),
                              kkm_device_number=number)
                self.terminal_device[code] = str(number)
            kiosk = Kiosk.objects.create(code=code, **fields)
            self.kiosks[code] = kiosk
            self.tokens[code] = KioskToken.issue(kiosk)
            self.iiko_group[code] = str(kiosk.iiko_terminal_group_id)
        self.setup_marking()

    def setup_marking(self) -> None:
        """The demo's marked products (water, ice cream) known as in ``manage.py demo``, and their codes
        minted on this soak's own check-service emulator (the one MARKING_CHECK_URL points at)."""
        from marking.models import MarkedProduct
        from nekassir.demo import DEMO_MARKED_PRODUCTS, mint_codes
        from nekassir.simulation import MarkingCodes

        for marked in DEMO_MARKED_PRODUCTS:
            MarkedProduct.objects.create(**marked)
            self.marking_gtins[marked["product_id"]] = marked["gtins"][0]
        url = self.emulators.url("marking")
        self.codes = MarkingCodes(self.marking_gtins, lambda gtin, count: mint_codes(url, gtin, "valid", count))
        self.codes.prefill()

    def mint_sold(self, gtin: str) -> str:
        """A fresh code of ``gtin`` that the marking operator says is sold (already out of circulation)."""
        from nekassir.demo import mint_codes

        return mint_codes(self.emulators.url("marking"), gtin, "sold", 1)[0]

    def start_processes(self) -> None:
        procs = self.procs
        procs.start("web")
        procs.start("devices")
        if not self.args.no_default_cluster:
            procs.start("default")
        procs.wait_web()
        procs.wait_cluster("devices")
        if not self.args.no_default_cluster:
            procs.wait_cluster("default")

    # ------------------------------------------------------------------------------------ orders
    def order_body(self) -> dict[str, Any]:
        """A random order (under ``order_lock``); about ``marked_rate`` of them with marked goods."""
        from iiko import emulator as menu

        rng = self.rng
        lines, total = [], Decimal("0")
        plain = [p for p in menu.DEMO_PRODUCTS if p["id"] not in self.marking_gtins]
        if self.marking_gtins and rng.random() < self.plan.marked_rate:
            marked = [p for p in menu.DEMO_PRODUCTS if p["id"] in self.marking_gtins]
            products = rng.sample(marked, k=2 if rng.random() < 0.25 else 1) + rng.sample(plain, k=rng.randint(0, 2))
            rng.shuffle(products)
        else:
            products = rng.sample(plain, k=rng.randint(1, 3))
        for product in products:
            quantity = Decimal(rng.choice(["1", "1", "2", "3"]))
            price = Decimal(product["price"])
            line: dict[str, Any] = {"product_id": product["id"], "name": product["name"], "price": f"{price:.2f}",
                                    "quantity": str(quantity), "vat": product["vat"], "modifiers": []}
            if product["sizes"]:
                size = rng.choice(product["sizes"])
                line["size_id"], line["price"] = size["id"], size["price"]
                price = Decimal(size["price"])
            if product["weighed"]:
                quantity = Decimal(rng.choice(["0.150", "0.255", "0.5"]))
                line["unit"], line["quantity"] = "kilogram", str(quantity)
            total += (price * quantity).quantize(Decimal("0.01"))
            if product["id"] in self.marking_gtins:
                line["marking_codes"] = self.codes.take(product["id"], int(quantity))
            if product["modifier_group_id"] and rng.random() < 0.6:
                modifier = rng.choice(menu.DEMO_MODIFIERS)
                line["modifiers"].append({"product_id": modifier["id"], "group_id": modifier["group_id"],
                                          "name": modifier["name"], "price": modifier["price"], "quantity": "1"})
                total += (Decimal(modifier["price"]) * quantity).quantize(Decimal("0.01"))
            lines.append(line)
        body = {"id": str(uuid.uuid4()), "lines": lines, "total": f"{total:.2f}", "payment": "card",
                "order_type": rng.choice(["takeaway", "dine_in"])}
        if rng.random() < 0.2:
            body["email_or_phone"] = "guest@example.com"
        if any("marking_codes" in line for line in lines):
            self.mark_codes(body)
        return body

    def mark_codes(self, body: dict[str, Any]) -> None:
        """Some marked orders get one code the operator says is sold (the order must fail marking_rejected, or
        marking_unavailable when the service is down), some one code sold before and returned since, or let go
        by an order that ended without a sale (it must sell again)."""
        rng = self.rng
        marked_lines = [line for line in body["lines"] if "marking_codes" in line]
        info = {"sold_code": False, "reused": False, "units": sum(len(line["marking_codes"]) for line in marked_lines)}
        if rng.random() < self.plan.sold_code_rate:
            line = rng.choice(marked_lines)
            code = self.mint_sold(self.marking_gtins[line["product_id"]])
            self.sold_codes.add(code)
            line["marking_codes"][rng.randrange(len(line["marking_codes"]))] = code
            info["sold_code"] = True
        elif rng.random() < self.plan.reuse_rate:
            line = rng.choice(marked_lines)
            code = self.reusable_code(self.marking_gtins[line["product_id"]])
            if code is not None:
                line["marking_codes"][rng.randrange(len(line["marking_codes"]))] = code
                info["reused"] = True
        for line in marked_lines:
            for code in line["marking_codes"]:
                self.last_order_of[code] = body["id"]
        self.marked_orders[body["id"]] = info
        self.stats.bump("marked", "orders with marked goods")
        self.stats.bump("marked", "marked units", info["units"])
        if info["sold_code"]:
            self.stats.bump("marked", "  with a code the operator says is sold")
        if info["reused"]:
            self.stats.bump("marked", "  with a code returned or let go before (sold again)")

    def reusable_code(self, gtin: str) -> str | None:
        """A code of ``gtin`` whose last order let it go (returned by a refund, released by a failure or an
        annulment): free to be sold again."""
        from nekassir.models import OrderMark

        try:
            free = [(code, str(order_id)) for code, order_id in OrderMark.objects.filter(
                gtin=gtin, state__in=[OrderMark.State.RETURNED, OrderMark.State.RELEASED]).values_list(
                "code", "order_id")]
        finally:
            self.db_done()
        candidates = sorted({code for code, order_id in free
                             if self.last_order_of.get(code) == order_id and code not in self.sold_codes})
        return self.rng.choice(candidates) if candidates else None

    def next_order(self) -> int | None:
        with self.order_lock:
            if self.stats.placed >= self.plan.orders or self.stop_chaos.is_set():
                return None
            self.stats.placed += 1
            return self.stats.placed

    def kiosk_loop(self, code: str, seed: int) -> None:
        rng = random.Random(seed)
        headers = {"Authorization": f"Bearer {self.tokens[code]}"}
        with httpx.Client(base_url=self.procs.url, headers=headers, timeout=20) as http:
            while (number := self.next_order()) is not None:
                with self.order_lock:
                    body = self.order_body()
                if rng.random() < self.plan.fault_rate:
                    self.arm_random_fault(code, rng, marked=body["id"] in self.marked_orders)
                self.orders[body["id"]] = code
                answer = self.post(http, body)
                if answer is None:
                    continue
                status = answer.get("status", "")
                deadline = time.monotonic() + self.plan.order_wait
                while status not in FINAL and time.monotonic() < deadline:
                    time.sleep(0.25)
                    try:
                        got = http.get(f"/api/v1/orders/{body['id']}")
                    except httpx.HTTPError:
                        continue
                    if got.status_code == 200:
                        status = got.json()["status"]
                self.stats.bump("ended_in_wait", status if status in FINAL else f"still {status}")
                if number % 50 == 0:
                    self.log(f"{number} orders placed; kills {len(self.stats.kills)}; "
                             f"faults armed {sum(self.stats.faults_armed.values())}")
                time.sleep(rng.random() * 0.2)

    def post(self, http: httpx.Client, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST the order; a lost connection or a 5xx is retried with the same body (idempotent by id)."""
        first = None
        for attempt in range(6):
            try:
                answer = http.post("/api/v1/orders", json=body)
            except httpx.HTTPError as exc:
                first = first or type(exc).__name__
                time.sleep(0.5 * (attempt + 1))
                continue
            first = first or str(answer.status_code)
            if answer.status_code in (200, 201):
                self.stats.bump("posted", first)
                return answer.json()
            if answer.status_code == 503 and _error_code(answer) == "card_unavailable":
                # The terminal has an operation of unknown outcome: the kiosk says "card payment unavailable"
                # and the guest goes away; nothing was saved (the invariant checks look at that).
                self.stats.bump("posted", "503 card_unavailable")
                self.card_unavailable.add(body["id"])
                time.sleep(1.0)
                return None
            if answer.status_code < 500:
                self.stats.bump("posted", first)
                self.stats.error(f"order {body['id']} refused: {answer.status_code} {answer.text[:300]}")
                return None
            time.sleep(0.5 * (attempt + 1))
        self.stats.bump("posted", f"{first} (gave up)")
        self.stats.error(f"order {body['id']} not accepted after retries (first answer {first})")
        return None

    # ------------------------------------------------------------------------------------ faults
    def arm_random_fault(self, code: str, rng: random.Random, marked: bool = False) -> None:
        choices = [("one", f) for f in FAULTS + (MARKING_FAULTS if marked else [])] + [("combo", c) for c in COMBOS]
        kind, chosen = rng.choices(choices, weights=[c[1][-1] for c in choices])[0]
        if kind == "one":
            target, name, extra, _ = chosen
            self.arm(code, target, name, dict(extra), rng)
            return
        label, faults, _ = chosen
        if not self.arm(code, *faults[0][:2], dict(faults[0][2]), rng):
            return
        for target, name, extra in faults[1:]:
            self.arm(code, target, name, dict(extra), rng, alone=False)
        if faults[0][0] == "terminal" and code != "K5":
            # KKM Server answers GetRezult for the lost sale unless it restarts and forgets its results.
            threading.Timer(rng.uniform(0.05, 0.3), self.restart_kkm).start()
        self.stats.bump("faults_armed", f"combo: {label}")

    def restart_kkm(self) -> None:
        try:
            httpx.post(f"{self.emulators.url('kkm')}/_emulator/restart", json={"keep_results": False},
                       timeout=5).raise_for_status()
            self.stats.kkm_restarts += 1
        except httpx.HTTPError as exc:
            self.stats.error(f"KKM Server restart failed: {exc}")

    def arm(self, code: str, target: str, name: str, extra: dict[str, Any], rng: random.Random,
            alone: bool = True) -> bool:
        emulators = self.emulators
        if target == "atol":
            app, device = emulators.atol, code
        elif target == "terminal":
            app = emulators.dc if code == "K5" else emulators.kkm
            device = self.terminal_device[code]
            # A second answer-level fault still pending would also hit the reversal that resolves the
            # first: the terminal would then stay blocked by design (PROTOCOLS 2.3), which needs staff.
            if alone and any(p["device"] == device for p in app.faults.pending()):
                return False
        elif target == "marking":
            app, device = emulators.marking, None  # one check service for every kiosk
        else:
            app, device = emulators.iiko, self.iiko_group[code]
        count = extra.pop("count", 1)
        app.faults.add(name, count, device, **extra)
        self.stats.bump("faults_armed", stack.fault_label(target, name, extra))
        if name in ("paper_out", "paper_out_after_write"):
            # Staff puts new paper in after a while.
            threading.Timer(rng.uniform(2, 8), self.restore_paper, args=(code,)).start()
        return True

    def restore_paper(self, code: str | None = None) -> None:
        body: dict[str, Any] = {"present": True}
        if code:
            body["device"] = code
        try:
            httpx.post(f"{self.emulators.url('atol')}/_emulator/paper", json=body, timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            self.stats.error(f"paper not restored on {code}: {exc}")

    # ------------------------------------------------------------------------------------ chaos threads
    def killer(self) -> None:
        for point in self.thresholds(self.plan.kills):
            if not self.wait_for_orders(point):
                return
            time.sleep(self.rng.random() * 2)
            self.kill_devices()

    def kill_devices(self) -> None:
        with self.cluster_lock:
            self.procs.kill("devices")
            self.stats.kills.append(time.monotonic() - self.stats.started)
            self.log(f"device cluster killed (#{len(self.stats.kills)}, after {self.stats.placed} orders)")
            time.sleep(self.rng.uniform(0.2, 2.0))
            self.procs.start("devices")
            self.stats.restarts += 1
            try:
                self.procs.wait_cluster("devices", timeout=90)
            except RuntimeError as exc:
                self.stats.error(f"device cluster did not come back: {exc}")

    def closer(self) -> None:
        events = [("manual", p) for p in self.thresholds(self.plan.manual_closes)]
        events += [("clock", p) for p in self.thresholds(self.plan.clock_advances, 0.2, 0.85)]
        advances = 0
        for kind, point in sorted(events, key=lambda e: e[1]):
            if not self.wait_for_orders(point):
                return
            if kind == "manual":
                code = self.rng.choice(KIOSKS)
                threading.Thread(target=self.manual_close, args=(code,), daemon=True).start()
            else:
                self.advance_clock(expire=advances % 2 == 1)
                advances += 1

    def manual_close(self, code: str) -> None:
        try:
            result = self.procs.manage("kkt", code, "close", timeout=120)
        except Exception as exc:
            self.stats.bump("manual_closes", f"{code}: {type(exc).__name__}")
            return
        outcome = "ok" if result.returncode == 0 else "refused/failed"
        try:
            data = json.loads(result.stdout or "{}")
            if result.returncode != 0:
                outcome = f"refused/failed: {str(data.get('error') or data)[:60]}"
        except ValueError:
            pass
        self.stats.bump("manual_closes", outcome)
        self.log(f"manual close {code}: {outcome}")

    def advance_clock(self, expire: bool) -> None:
        from django.conf import settings

        margin = settings.SHIFT_CLOSE_MARGIN
        seconds = 24 * 3600 + 60 if expire else 24 * 3600 - margin + 60
        httpx.post(f"{self.emulators.url('atol')}/_emulator/clock", json={"advance_seconds": seconds},
                   timeout=5).raise_for_status()
        kind = "past expiry (expired shifts)" if expire else "into the closing margin (automatic close)"
        self.stats.clock_advances.append(kind)
        self.log(f"register clock advanced {seconds} s: {kind}")

    def refunder(self) -> None:
        for point in self.thresholds(self.plan.refunds, 0.1, 0.9):
            if not self.wait_for_orders(point):
                return
            try:
                self.one_refund()
            except Exception:
                self.stats.error(f"refund request crashed: {traceback.format_exc()[-800:]}")
            finally:
                self.db_done()

    def one_refund(self) -> None:
        from nekassir.models import Order
        from nekassir.refunds import RefundError, refundable, refundable_marks, request_refund

        paid_orders = Order.objects.filter(status__in=["completed", "not_delivered"])
        paid = list(paid_orders.values_list("pk", flat=True))
        marked = list(paid_orders.filter(marks__state="sold").distinct().values_list("pk", flat=True))
        if not paid:
            self.stats.bump("refunds", "no paid order yet")
            return
        pool = marked if marked and self.rng.random() < self.plan.marked_refund_rate else paid
        order = Order.objects.get(pk=self.rng.choice(sorted(pool)))
        remaining = {k: v for k, v in refundable(order).items() if v > 0}
        if not remaining:
            self.stats.bump("refunds", "nothing left to refund")
            return
        if self.rng.random() < 0.5:
            quantities = remaining
            kind = "full"
        else:
            line_id = self.rng.choice(sorted(remaining))
            left = remaining[line_id]
            quantities = {line_id: Decimal("1") if left >= 1 and left == left.to_integral() else left}
            kind = "partial"
        # Marked lines go back by the unit (issue 13): the manager ticks which units, or leaves the default (the
        # line's last units).
        marks: dict[int, list[int]] = {}
        free = refundable_marks(order)
        for line_id, quantity in quantities.items():
            units = [mark.pk for mark in free.get(line_id, [])]
            if units and self.rng.random() < 0.7 and quantity <= len(units):
                marks[line_id] = self.rng.sample(units, k=int(quantity))
        if free:
            kind += " (marked goods: units ticked)" if marks else " (marked goods: default units)"
        cancel_in_iiko = self.rng.random() < 0.3
        clicks = 2 if self.rng.random() < 0.2 else 1  # a double click / two managers at once

        def attempt() -> str:
            try:
                request_refund(Order.objects.get(pk=order.pk), quantities, to_card=True,
                               cancel_in_iiko=cancel_in_iiko, marks=marks or None)
                return f"{kind}: requested"
            except RefundError as exc:
                return f"{kind}: refused ({exc.code})"
            finally:
                self.db_done()

        if clicks == 1:
            outcomes = [attempt()]
        else:
            results: list[str] = []
            threads = [threading.Thread(target=lambda: results.append(attempt())) for _ in range(clicks)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            outcomes = [f"{o} [double click]" for o in results]
        for outcome in outcomes:
            self.stats.bump("refunds", outcome)

    def manager(self) -> None:
        """A venue manager: every few seconds, an unknown card operation that recovery could not resolve
        (KKM Server restarted and lost its results, while an unnamed reversal could cancel the previous
        guest's payment) is resolved by hand on its order page, from the terminal's own record, as a manager
        reads it on the bank slip or the terminal's report (``nekassir.card_resolution``, the product's code)."""
        while not self.stop_chaos.wait(6):
            self.resolve_by_hand(min_attempts=2)

    def resolve_by_hand(self, min_attempts: int = 1) -> None:
        from django.contrib.auth.models import User

        from nekassir.card_resolution import ResolutionError, resolve_charged, resolve_not_charged
        from nekassir.models import Refund
        from payments.models import CardOperation

        try:
            user, _ = User.objects.get_or_create(username="soak-manager", defaults={"first_name": "Менеджер"})
            stuck = CardOperation.objects.filter(state="unknown", kind__in=["sale", "cancel", "refund"],
                                                 resolve_attempts__gte=min_attempts).select_related("original")
            for op in stuck:
                sale = op if op.kind == "sale" else op.original
                order = sale.paid_order if sale is not None and hasattr(sale, "paid_order") else None
                if order is None and op.reference.startswith("refund:"):
                    order = Refund.objects.get(pk=int(op.reference.split(":")[1])).order
                if order is None:
                    continue
                record = self.terminal_record(op)
                note = "по журналу терминала (отчёт терминала), soak"
                try:
                    if record is not None and record["state"] == "approved":
                        resolve_charged(order, op.pk, rrn=record["rrn"], auth_code=record["auth"], note=note,
                                        user=user)
                        self.stats.bump("by_hand", f"{op.kind}: деньги списаны")
                    else:
                        resolve_not_charged(order, op.pk, note=note, user=user)
                        self.stats.bump("by_hand", f"{op.kind}: не списаны")
                except ResolutionError as exc:
                    self.stats.bump("by_hand", f"{op.kind}: refused ({exc.code})")
        except Exception:
            self.stats.error(f"manual resolution crashed: {traceback.format_exc()[-800:]}")
        finally:
            self.db_done()

    def terminal_record(self, op: Any) -> dict[str, Any] | None:
        """The terminal's own record of ``op`` (what its report or the bank slip shows), or None."""
        from payments.dualconnector_client import ecr_transaction_id

        app = self.emulators.dc if op.transport == "dualconnector" else self.emulators.kkm
        ids = {op.op_id, ecr_transaction_id(op.op_id)}
        for device in app.book.data["devices"].values():
            for tx in device["transactions"]:
                if tx["id"] in ids and tx["kind"] == op.kind:
                    return tx
        return None

    def maintenance(self) -> None:
        """What the every-minute schedules do, more often: recovery and the automatic-close scan."""
        from nekassir.autoclose import scan
        from nekassir.recovery import recover

        while not self.stop_chaos.wait(8):
            try:
                recover()
                self.stats.recoveries += 1
                scan()
                self.stats.scans += 1
            except Exception:
                self.stats.error(f"recover/scan crashed: {traceback.format_exc()[-800:]}")
            finally:
                self.db_done()

    # ------------------------------------------------------------------------------------ phases
    def chaos(self) -> None:
        threads = [threading.Thread(target=self.kiosk_loop, args=(code, self.args.seed * 100 + i), name=code)
                   for i, code in enumerate(KIOSKS)]
        helpers = [threading.Thread(target=target, name=target.__name__, daemon=True)
                   for target in (self.killer, self.closer, self.refunder, self.maintenance, self.manager)]
        for thread in threads + helpers:
            thread.start()
        deadline = time.monotonic() + self.args.chaos_timeout
        for thread in threads:
            thread.join(timeout=max(1, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            self.stats.error(f"the kiosks did not place {self.plan.orders} orders within {self.args.chaos_timeout}s")
        self.stop_chaos.set()
        for thread in threads + helpers:
            thread.join(timeout=150)

    def pending(self) -> dict[str, int]:
        from django_q.models import OrmQ

        from fiscal.models import FiscalOperation
        from nekassir.models import Order, Refund
        from payments.models import CardOperation

        return {
            "orders not done": Order.objects.exclude(step="done").count(),
            "register ops unresolved": FiscalOperation.objects.filter(state__in=FiscalOperation.UNRESOLVED).count(),
            "terminal ops unresolved": CardOperation.objects.filter(state__in=CardOperation.UNRESOLVED).count(),
            "refunds unfinished": Refund.objects.exclude(state__in=["done", "failed"]).count(),
            "device jobs queued": OrmQ.objects.filter(key="devices").count(),
        }

    def drain(self) -> dict[str, int]:
        """Faults cleared, paper in, a live device cluster: recovery until nothing is left (or timeout)."""
        from nekassir.recovery import recover

        self.emulators.clear_faults()
        self.restore_paper()
        if not self.procs.alive("devices"):
            self.procs.start("devices")
            self.procs.wait_cluster("devices")
        deadline = time.monotonic() + self.plan.drain_timeout
        left = self.pending()
        while time.monotonic() < deadline:
            recover()
            self.stats.recoveries += 1
            self.resolve_by_hand(min_attempts=1)  # what recovery alone cannot settle, a manager does
            time.sleep(5)
            left = self.pending()
            work = {k: v for k, v in left.items() if k != "device jobs queued"}
            if not any(work.values()):
                break
            self.log(f"draining: {left}")
        self.db_done()
        return left

    def close_all_shifts(self) -> list[str]:
        """Every open shift closed (with its settlement), so that every shift can be reconciled."""
        from fiscal.models import Shift
        from nekassir.shift_closing import close_shift

        problems = []
        for code in KIOSKS:
            kiosk = self.kiosks[code]
            for attempt in range(3):
                try:
                    close_shift(kiosk, reason="конец прогона", wait=60)
                    break
                except Exception as exc:
                    if attempt == 2:
                        problems.append(f"{code}: {exc}")
                    time.sleep(2)
        open_left = list(Shift.objects.filter(state="open").values_list("kiosk__code", "number"))
        if open_left:
            problems.append(f"still open: {open_left}")
        self.db_done()
        return problems

    def run(self) -> int:
        from scripts import soak_checks

        plan = self.plan
        self.log(f"plan: {asdict(plan)}; database: {self.args.database_label}; data: {self.args.data_dir}")
        self.emulators = stack.start_emulators(plan.print_delay, plan.card_delay, plan.iiko_delay,
                                               marking_port=self.args.marking_port)
        self.procs = stack.Processes(self.args.data_dir, self.args.env)
        try:
            t0 = time.monotonic()
            self.setup_venue()
            self.db_done()
            self.start_processes()
            self.stats.phases["setup"] = time.monotonic() - t0
            self.log(f"ready: web {self.procs.url}, emulators {[s.url for s in self.emulators.servers]}")
            t0 = time.monotonic()
            self.chaos()
            self.stats.phases["chaos"] = time.monotonic() - t0
            self.log(f"chaos done: {self.stats.placed} orders, {len(self.stats.kills)} kills; draining")
            t0 = time.monotonic()
            left = self.drain()
            closing = self.close_all_shifts()
            left_after = self.drain() if any(v for k, v in self.pending().items() if k != "device jobs queued") \
                else self.pending()
            self.stats.phases["recovery"] = time.monotonic() - t0
        except Exception:
            self.stats.error(f"the soak itself failed: {traceback.format_exc()[-3000:]}")
            for name in list(self.procs.procs):
                print(self.procs.tail(name), file=sys.stderr)
            self.procs.stop_all()
            self.emulators.stop()
            return 2
        self.procs.stop_all()
        t0 = time.monotonic()
        report = soak_checks.check_everything(self.emulators, self.orders, left_after, closing,
                                              refused=self.card_unavailable, marked=self.marked_orders)
        self.stats.phases["checks"] = time.monotonic() - t0
        self.emulators.stop()
        self.db_done()
        return self.finish(report, left)

    def finish(self, report: Any, left_before_close: dict[str, int]) -> int:
        stats = self.stats
        total = time.monotonic() - stats.started
        print()
        print("=" * 100)
        print(f"SOAK {'short' if self.args.short else 'full'}: {stats.placed} orders on {len(KIOSKS)} kiosks, "
              f"{len(stats.kills)} kills of the device cluster, {total:.0f} s "
              f"(setup {stats.phases.get('setup', 0):.0f}, chaos {stats.phases.get('chaos', 0):.0f}, "
              f"recovery {stats.phases.get('recovery', 0):.0f}, checks {stats.phases.get('checks', 0):.0f}); "
              f"database {self.args.database_label}")
        print("=" * 100)
        hits = self.emulators.hits
        rows = [(label, stats.faults_armed.get(label, 0), hits.get(label, 0))
                for label in sorted(set(stats.faults_armed) | set(hits))]
        _table("FAULTS INJECTED (terminal = KKM Server terminals 1-4 and the DualConnector one)",
               ["fault", "armed", "hit an operation"], rows)
        print(f"  (armed {sum(stats.faults_armed.values())}, hit {sum(hits.values())}; a fault not hit was "
              f"cleared at the end)")
        _table("DISRUPTIONS", ["what", "count"], [
            ("device cluster SIGKILL (process group) + restart", len(stats.kills)),
            ("KKM Server restarts forgetting their results", stats.kkm_restarts),
            ("unknown card operations resolved by hand (manager)", sum(stats.by_hand.values())),
            *[(f"  by hand: {k}", v) for k, v in sorted(stats.by_hand.items())],
            ("manual shift closes (manage.py kkt K close)", sum(stats.manual_closes.values())),
            *[(f"  manual close: {k}", v) for k, v in sorted(stats.manual_closes.items())],
            ("register clock advances (automatic / expired closes)", len(stats.clock_advances)),
            ("refund requests", sum(stats.refunds.values())),
            *[(f"  refund: {k}", v) for k, v in sorted(stats.refunds.items())],
            ("orders with marked goods (marked units)",
             f"{stats.marked['orders with marked goods']} ({stats.marked['marked units']})"),
            *[(k, v) for k, v in stats.marked.items() if k.startswith("  ")],
            ("recover() + autoclose scan() calls by the driver", stats.recoveries),
            *[(f"  POST /orders first answer {k}", v) for k, v in sorted(stats.posted.items())],
            *[(f"  kiosk saw at its wait's end: {k}", v) for k, v in sorted(stats.ended_in_wait.items())],
        ])
        _table("STATE AFTER RECOVERY", ["what", "count"], list(report.final_counts.items()))
        _table("INVARIANTS", ["invariant", "checked", "violations", "result"],
               [(c.name, c.checked, len(c.violations), "ok" if not c.violations else "FAIL") for c in report.checks])
        failed = [c for c in report.checks if c.violations]
        for check in failed:
            print(f"\nFAIL {check.name}:")
            for violation in check.violations[:15]:
                print(f"   - {violation}")
            if len(check.violations) > 15:
                print(f"   ... and {len(check.violations) - 15} more")
        for note in report.notes:
            print(f"note: {note}")
        if stats.errors:
            print(f"\nRUN ERRORS ({len(stats.errors)}):")
            for error in stats.errors[:20]:
                print(f"   - {error[:500]}")
        summary = {
            "orders": stats.placed, "kills": len(stats.kills), "seconds": round(total, 1), "phases": stats.phases,
            "faults_armed": dict(stats.faults_armed), "fault_hits": dict(hits),
            "manual_closes": dict(stats.manual_closes), "clock_advances": stats.clock_advances,
            "refunds": dict(stats.refunds), "by_hand": dict(stats.by_hand), "final": report.final_counts,
            "marked": dict(stats.marked),
            "invariants": {c.name: {"checked": c.checked, "violations": c.violations[:50]} for c in report.checks},
            "errors": stats.errors, "left_before_final_close": left_before_close,
        }
        path = self.args.data_dir / "soak-report.json"
        path.write_text(json.dumps(summary, ensure_ascii=False, indent=1, default=str))
        print(f"\nreport: {path}; logs: {self.args.data_dir}")
        ok = (not failed and not stats.errors and stats.placed >= self.plan.orders
              and len(stats.kills) >= self.plan.kills)
        print(f"\nSOAK {'PASSED' if ok else 'FAILED'}")
        return 0 if ok else 1


def _error_code(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _table(title: str, header: list[str], rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)] if rows else [
        len(h) for h in header]
    print(f"\n{title}")
    print("  " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=False)))
    print("  " + "-+-".join("-" * w for w in widths))
    for row in rows:
        print("  " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the CI version (~100 orders, 3 kills)")
    parser.add_argument("--orders", type=int)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--refunds", type=int)
    parser.add_argument("--db", choices=["auto", "pg", "sqlite"], default=os.environ.get("SOAK_DB", "auto"),
                        help="ORM broker and data on a throwaway PostgreSQL database (default when reachable) "
                             "or a SQLite file in the temporary data folder")
    parser.add_argument("--pg-url", default=stack.DEFAULT_PG_URL, help="the PostgreSQL server to create it on")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "0")) or random.randrange(10**6))
    parser.add_argument("--chaos-timeout", type=float, help="seconds the kiosks may take to place every order")
    parser.add_argument("--no-default-cluster", action="store_true", help="schedules only from this driver")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and the database")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = PLANS["short" if args.short else "full"]
    for name in ("orders", "kills", "refunds"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    args.chaos_timeout = args.chaos_timeout or (150 if args.short else 1140)
    args.data_dir = Path(tempfile.mkdtemp(prefix="nekassir-soak-"))
    database_url, db_name = "", ""
    use_pg = args.db == "pg" or (args.db == "auto" and not stack.pg_problem(args.pg_url))
    if args.db == "pg" and (problem := stack.pg_problem(args.pg_url)):
        print(f"PostgreSQL not reachable: {problem}", file=sys.stderr)
        return 2
    if use_pg:
        db_name = f"nekassir_soak_{os.getpid()}"
        database_url = stack.create_pg_database(args.pg_url, db_name)
        args.database_label = f"PostgreSQL (database {db_name}, ORM broker)"
    else:
        args.database_label = "SQLite (file in the data folder, ORM broker)"
    args.marking_port = stack.free_port()  # the check service's, known before the settings are read
    args.env = stack.base_env(args.data_dir, database_url, marking_url=f"http://127.0.0.1:{args.marking_port}")
    os.environ.update(args.env)
    for name in ("NEKASSIR_USE_TEST_DB", "NEKASSIR_Q_SYNC", "Q_DEVICE_WORKERS"):
        os.environ.pop(name, None)
    if not database_url:
        os.environ.pop("DATABASE_URL", None)
    print(f"[soak] seed {args.seed} (rerun with --seed {args.seed})", flush=True)
    import django

    django.setup()
    code = 2
    try:
        code = Soak(plan, args).run()
        return code
    finally:
        from django.db import connections

        connections.close_all()
        if code == 0 and not args.keep:
            shutil.rmtree(args.data_dir, ignore_errors=True)
        if db_name and not args.keep:
            try:
                stack.drop_pg_database(args.pg_url, db_name)
            except Exception as exc:
                print(f"[soak] database {db_name} not dropped: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
