"""Fixtures every room's tests share: every device emulator as a real HTTP server on a free port, with its own
state; a venue on them (two kiosks whose service PIN is ``tests.panel_support.PIN``); panel accounts with and
without rights. A folder's own conftest.py holds what only that folder uses; the map is in tests/__init__.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User

from core.emulator_http import EmulatorApp, EmulatorServer
from marking.emulator import MarkingCheckEmulator
from marking.operator import OperatorRegistry
from tests.panel_support import ALL_PANEL_PERMISSIONS, PIN, make_user
from tests.venue import build_venue


class RunningEmulator:
    """An emulator served over HTTP for one test, with helpers for its control API."""

    def __init__(self, server: EmulatorServer):
        self.server = server
        self.app = server.app
        self.url = server.url
        self.control = httpx.Client(base_url=self.url, timeout=5)

    def fault(self, fault: str, count: int = 1, device: str | None = None, **extra) -> None:
        body = {"fault": fault, "count": count, **extra}
        if device is not None:
            body["device"] = device
        self.control.post("/_emulator/faults", json=body).raise_for_status()

    def journal(self) -> list[dict]:
        answer = self.control.get("/_emulator/journal")
        answer.raise_for_status()
        return answer.json()

    def reset(self) -> None:
        self.control.post("/_emulator/reset").raise_for_status()


@pytest.fixture
def serve_emulator() -> Iterator:
    """Factory: ``serve_emulator(app)`` starts ``app`` on a free port until the test ends."""
    servers: list[EmulatorServer] = []

    def start(app: EmulatorApp) -> RunningEmulator:
        server = EmulatorServer(app).start()
        servers.append(server)
        return RunningEmulator(server)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def marking_operator(tmp_path) -> OperatorRegistry:
    """The marking operator's code table, one per test, shared by the ATOL and the check service emulators."""
    return OperatorRegistry(state_path=str(tmp_path / "marking.json"))


@pytest.fixture
def atol_emulator(serve_emulator, tmp_path, marking_operator) -> RunningEmulator:
    from fiscal.atol_emulator import AtolWebServerEmulator

    return serve_emulator(AtolWebServerEmulator(state_path=str(tmp_path / "atol.json"), print_delay=0.02,
                                                marking_operator=marking_operator))


@pytest.fixture
def marking_emulator(serve_emulator, marking_operator) -> RunningEmulator:
    """The marking check service (key ``marking.emulator.DEMO_TOKEN``), answering from ``marking_operator``."""
    return serve_emulator(MarkingCheckEmulator(marking_operator))


@pytest.fixture
def kkm_emulator(serve_emulator, tmp_path) -> RunningEmulator:
    from payments.kkm_emulator import KkmServerEmulator

    return serve_emulator(KkmServerEmulator(state_path=str(tmp_path / "kkm.json"), card_delay=0.0,
                                            tz=django_settings.TIME_ZONE))  # slips in the venue's time zone


@pytest.fixture
def dc_emulator(serve_emulator, tmp_path) -> RunningEmulator:
    from payments.dualconnector_emulator import DualConnectorEmulator

    return serve_emulator(DualConnectorEmulator(state_path=str(tmp_path / "dc.json"), card_delay=0.0,
                                                tz=django_settings.TIME_ZONE))  # slips in the venue's time zone


@pytest.fixture
def iiko_emulator(serve_emulator, tmp_path) -> RunningEmulator:
    from iiko.emulator import IikoEmulator

    return serve_emulator(IikoEmulator(state_path=str(tmp_path / "iiko.json")))


@pytest.fixture
def venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator, settings):
    settings.TERMINAL_HTTP_TIMEOUT = 0.5
    settings.TERMINAL_GUEST_TIMEOUT = 0.5
    settings.TERMINAL_POLL_FOR = 0.4
    venue = build_venue(atol_emulator, kkm_emulator, dc_emulator, iiko_emulator)
    for kiosk in venue.kiosks.values():
        kiosk.set_service_pin(PIN)
    return venue


@pytest.fixture
def manager(db) -> User:
    return make_user("anna", *ALL_PANEL_PERMISSIONS)


@pytest.fixture
def viewer(db) -> User:
    """May look and print X reports, may not refund, close shifts or print copies."""
    return make_user("oleg", "print_xreport")


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def support(client):
    """A superuser's client (the kiosk's admin page)."""
    client.force_login(User.objects.create_superuser("root", password="x"))
    return client
