"""Ready-made objects for tests."""

from __future__ import annotations

from nekassir.models import Kiosk


def make_kiosk(atol_url: str, code: str = "K1", **fields) -> Kiosk:
    defaults = {"name": f"Киоск {code}", "has_register": True, "atol_url": atol_url, "atol_device_id": code}
    return Kiosk.objects.create(code=code, **{**defaults, **fields})
