"""The device emulators served in the benchmark's own process, with the time they spend recorded.

Every protocol request an emulator handles, and every ATOL task its device worker processes, is kept
as a (start, end) interval of ``time.monotonic()``. ``busy(t0, t1)`` is the union of those intervals
within a window: the time an order spent waiting inside the emulators, so that what is left of the
order's time is ours (HTTP, queues, database, polling).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.emulator_http import EmulatorServer


@dataclass
class Recorder:
    intervals: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, func):
        def timed(*args: Any, **kwargs: Any):
            start = time.monotonic()
            try:
                return func(*args, **kwargs)
            finally:
                end = time.monotonic()
                with self.lock:
                    self.intervals.append((start, end))

        return timed

    def busy(self, t0: float, t1: float) -> float:
        """Seconds within [t0, t1] during which at least one emulator was working."""
        with self.lock:
            clipped = sorted((max(a, t0), min(b, t1)) for a, b in self.intervals if b > t0 and a < t1)
        total, current_start, current_end = 0.0, None, None
        for a, b in clipped:
            if current_end is None or a > current_end:
                if current_end is not None:
                    total += current_end - current_start
                current_start, current_end = a, b
            else:
                current_end = max(current_end, b)
        if current_end is not None:
            total += current_end - current_start
        return total

    def forget_before(self, t: float) -> None:
        with self.lock:
            self.intervals = [i for i in self.intervals if i[1] >= t]


class Emulators:
    """ATOL Web Server, KKM Server and iiko emulators on free ports of 127.0.0.1."""

    def __init__(self, state_dir: Path | None = None, print_delay: float = 0.0, card_delay: float = 0.0,
                 iiko_delay: float = 0.0):
        from fiscal.atol_emulator import AtolWebServerEmulator
        from iiko.emulator import IikoEmulator
        from payments.kkm_emulator import KkmServerEmulator

        # No state file: a real device spends no time writing our JSON (``state_dir`` for a test that wants one).
        def path(name: str) -> str | None:
            if state_dir is None:
                return None
            state_dir.mkdir(parents=True, exist_ok=True)
            return str(state_dir / name)

        self.recorder = Recorder()
        self.atol = AtolWebServerEmulator(state_path=path("atol.json"), print_delay=print_delay)
        self.kkm = KkmServerEmulator(state_path=path("kkm.json"), card_delay=card_delay)
        self.iiko = IikoEmulator(state_path=path("iiko.json"), creation_delay=iiko_delay)
        for app in (self.atol, self.kkm, self.iiko):
            app.handle = self._timed_protocol(app.handle)
        # An ATOL task is printed by the device worker after the POST was answered: time it too.
        self.atol._process_task = self.recorder.wrap(self.atol._process_task)
        self.servers = {name: EmulatorServer(app).start()
                        for name, app in (("atol", self.atol), ("kkm", self.kkm), ("iiko", self.iiko))}

    def _timed_protocol(self, handle):
        timed = self.recorder.wrap(handle)

        def route(request):
            if request.path.startswith("/_emulator/"):
                return handle(request)  # the control API is ours, not the device's
            return timed(request)

        return route

    def url(self, name: str) -> str:
        return self.servers[name].url

    def set_delays(self, print_delay: float, card_delay: float, iiko_delay: float) -> None:
        self.atol.print_delay = print_delay
        self.kkm.card_delay = card_delay
        self.iiko.creation_delay = iiko_delay

    def journals(self) -> dict[str, list[dict[str, Any]]]:
        return {"atol": self.atol.journal(), "kkm": self.kkm.journal(), "iiko": self.iiko.journal()}

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
