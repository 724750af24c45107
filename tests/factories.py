"""Ready-made objects for tests."""

from __future__ import annotations

from core.models import Kiosk


def make_kiosk(atol_url: str, code: str = "K1", **fields) -> Kiosk:
    defaults = {"name": f"Киоск {code}", "has_register": True, "atol_url": atol_url, "atol_device_id": code}
    return Kiosk.objects.create(code=code, **{**defaults, **fields})


def make_terminal_kiosk(atol_url: str, *, kkm_url: str = "", dc_url: str = "", code: str = "K1", **fields) -> Kiosk:
    """A kiosk with a register and a terminal: KKM Server when ``kkm_url`` is given, else DualConnector."""
    terminal = (
        {"terminal_transport": "kkm", "terminal_kind": "sberbank", "kkm_url": kkm_url, "kkm_device_number": 1}
        if kkm_url
        else {"terminal_transport": "dualconnector", "terminal_kind": "dualconnector", "dc_url": dc_url}
    )
    return make_kiosk(atol_url, code, **{**terminal, **fields})


def form_data(kiosk, **changes):
    """The kiosk admin's change form as posted for ``kiosk``, blank passwords (kept), with ``changes``."""
    data = {
        "code": kiosk.code, "name": kiosk.name, "active": "on", "has_register": "on", "atol_url": kiosk.atol_url,
        "atol_device_id": kiosk.atol_device_id, "atol_username": kiosk.atol_username, "atol_password": "",
        "taxation_type": "osn", "terminal_transport": "", "terminal_kind": "sberbank", "kkm_device_number": 0,
        "dc_operation_codes": "{}", "print_slips": "on", "kkm_password": "",
    }
    data.update(changes)
    return data
