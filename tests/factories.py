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
