"""The fiscal room's own fixtures: one ATOL emulator per test module, each test on a register (deviceID) of its
own, and a tiny ATOL Web Server client (the emulator's tests and the correction receipts' emulator tests)."""

from __future__ import annotations

import time
import uuid as uuid_lib
from collections.abc import Iterator

import httpx
import pytest

from core.emulator_http import EmulatorServer
from fiscal.atol_emulator import AtolWebServerEmulator
from tests.conftest import RunningEmulator

FINAL = {"ready", "error", "interrupted", "canceled"}


def position(name: str = "Капучино", price: float = 189.0, quantity: float = 1, vat: str = "vat22") -> dict:
    return {
        "type": "position", "name": name, "price": price, "quantity": quantity,
        "amount": round(price * quantity, 2), "tax": {"type": vat},
        "paymentMethod": "fullPayment", "paymentObject": "commodity", "measurementUnit": "piece",
    }


def sell(*items: dict, paid: float | None = None, kind: str = "sell", payment: str = "electronically") -> dict:
    items = items or (position(),)
    total = round(sum(item["amount"] for item in items), 2)
    return {
        "type": kind, "taxationType": "osn", "operator": {"name": "Киоск 1"},
        "machineNumber": "KIOSK-1",  # the emulated registers are registered for an automatic device
        "items": list(items), "payments": [{"type": payment, "sum": total if paid is None else paid}],
        "total": total,
    }


class Atol:
    """A tiny ATOL Web Server client for the tests: post a request, poll it until every sub-task is final."""

    def __init__(self, url: str, device: str | None = None, auth: tuple[str, str] | None = None):
        # One connection per request: the shared HTTP base writes headers and body in two packets, and on a
        # kept-alive connection Nagle's algorithm plus delayed ACKs add 40 ms to every answer.
        self.http = httpx.Client(base_url=url, timeout=5, auth=auth, headers={"Connection": "close"})
        self.device = device

    def params(self, device: str | None = None) -> dict:
        device = device or self.device
        return {"deviceID": device} if device else {}

    def post(self, *tasks: dict, uuid: str | None = None, device: str | None = None) -> tuple[str, httpx.Response]:
        uuid = uuid or str(uuid_lib.uuid4())
        body = {"uuid": uuid, "request": list(tasks)}
        return uuid, self.http.post("/api/v2/requests", params=self.params(device), json=body)

    def get(self, uuid: str, device: str | None = None) -> httpx.Response:
        return self.http.get(f"/api/v2/requests/{uuid}", params=self.params(device))

    def wait(self, uuid: str, device: str | None = None, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(uuid, device)
            answer.raise_for_status()
            results = answer.json()["results"]
            if all(entry["status"] in FINAL for entry in results):
                return results
            assert time.monotonic() < deadline, f"task {uuid} still {results}"
            time.sleep(0.01)

    def wait_for_status(self, uuid: str, status: str, device: str | None = None, timeout: float = 3.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            entry = self.get(uuid, device).json()["results"][0]
            if entry["status"] == status:
                return entry
            assert time.monotonic() < deadline, f"task {uuid} never became {status}: {entry}"
            time.sleep(0.01)

    def run(self, *tasks: dict, device: str | None = None) -> list[dict]:
        uuid, answer = self.post(*tasks, device=device)
        assert answer.status_code == 201, answer.text
        return self.wait(uuid, device)

    def one(self, task: dict, device: str | None = None) -> dict:
        return self.run(task, device=device)[0]

    def result(self, task: dict, device: str | None = None) -> dict:
        entry = self.one(task, device)
        assert entry["status"] == "ready", entry
        return entry["result"]


def error_code(entry: dict) -> int:
    return entry["error"]["code"]


class Shared:
    """One emulator for the whole module; each test gets its own register (deviceID), so tests stay apart.

    Starting a server per test costs 0.5 s at its shutdown; tests that touch what registers share (the
    clock, reset, faults without a device, constructor options) use ``atol_emulator`` instead.
    """

    def __init__(self, emulator: RunningEmulator, device: str):
        self.emulator = emulator
        self.device = device

    def fault(self, fault: str, **extra) -> None:
        self.emulator.fault(fault, device=self.device, **extra)

    def journal(self) -> list[dict]:
        return [entry for entry in self.emulator.journal() if entry["device"] == self.device]

    def prints(self) -> list[dict]:
        prints = self.emulator.control.get("/_emulator/prints").json()
        return [entry for entry in prints if entry["device"] == self.device]

    def paper(self, present: bool) -> None:
        answer = self.emulator.control.post("/_emulator/paper", json={"present": present, "device": self.device})
        answer.raise_for_status()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> Iterator[RunningEmulator]:
    state = tmp_path_factory.mktemp("atol") / "atol.json"
    server = EmulatorServer(AtolWebServerEmulator(state_path=str(state), print_delay=0.02)).start()
    yield RunningEmulator(server)
    server.app.close()
    server.stop()


@pytest.fixture
def shared(shared_server) -> Shared:
    return Shared(shared_server, f"kiosk-{uuid_lib.uuid4().hex[:8]}")


@pytest.fixture
def atol(shared) -> Atol:
    return Atol(shared.emulator.url, device=shared.device)
