"""Builds the device emulators that ``python manage.py emulators`` serves (and the tests start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from core.emulator_http import EmulatorApp
from fiscal.atol_emulator import AtolWebServerEmulator
from iiko.emulator import IikoEmulator
from marking.emulator import MarkingCheckEmulator
from marking.operator import OperatorRegistry
from payments.dualconnector_emulator import DualConnectorEmulator
from payments.kkm_emulator import KkmServerEmulator


@dataclass
class EmulatorDelays:
    """Stand-ins for the physical world: printing a document, a guest with a card, iikoFront."""

    print_delay: float = 1.0
    card_delay: float = 3.0
    iiko_delay: float = 1.0


def build_emulators(state_dir: Path, delays: EmulatorDelays) -> dict[str, EmulatorApp]:
    """Every emulator, keyed by the names of ``settings.EMULATOR_PORTS``. One marking operator (the code table)
    is shared by the register's validation (ATOL) and the check service, as the real services agree."""
    state_dir.mkdir(parents=True, exist_ok=True)
    operator = OperatorRegistry(state_path=str(state_dir / "marking.json"))
    return {
        "atol": AtolWebServerEmulator(state_path=str(state_dir / "atol.json"), print_delay=delays.print_delay,
                                      marking_operator=operator),
        # the terminals print their slips in the venue's time zone, as the panel shows times
        "kkm": KkmServerEmulator(state_path=str(state_dir / "kkm.json"), card_delay=delays.card_delay,
                                 tz=settings.TIME_ZONE),
        "dualconnector": DualConnectorEmulator(state_path=str(state_dir / "dc.json"), card_delay=delays.card_delay,
                                               tz=settings.TIME_ZONE),
        "iiko": IikoEmulator(state_path=str(state_dir / "iiko.json"), creation_delay=delays.iiko_delay),
        "marking": MarkingCheckEmulator(operator),
    }
