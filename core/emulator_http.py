"""The HTTP plumbing shared by every device emulator (ATOL, KKM Server, DualConnector, iiko).

Plain Python, no Django: an emulator is an object with a ``handle(request) -> Response`` method,
served by a threading HTTP server on 127.0.0.1 in a daemon thread. The emulators speak the vendors'
wire protocols over real HTTP so that the clients are tested exactly as they run in a venue.

Every emulator also answers the control API under ``/_emulator/`` (faults, journal, reset);
``EmulatorApp`` routes those to ``add_fault`` / ``journal`` / ``reset`` so each emulator only
implements its protocol.

Floor: bottom (``core``, shared by every room); imports nothing of ``fiscal``, ``payments``, ``iiko`` or
``nekassir`` (import-linter, pyproject.toml).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Fault behaviours: drop the connection without an answer (a "lost answer"), or hang
    # for ``hang_seconds`` first (a timeout as the client sees it).
    drop: bool = False
    hang_seconds: float = 0.0


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return Response(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def lost_answer() -> Response:
    """The work was done (or not), but the client never gets the HTTP answer."""
    return Response(drop=True)


def never_answers(seconds: float = 600.0) -> Response:
    """The answer never comes: the client's own timeout fires first."""
    return Response(drop=True, hang_seconds=seconds)


class FaultQueue:
    """Faults armed through ``POST /_emulator/faults``: each hits the next matching operation.

    A fault with a device hits only that device; one without hits any device.
    """

    def __init__(self, known: Collection[str]):
        self.known = set(known)
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, fault: str, count: int = 1, device: str | None = None, **extra: Any) -> None:
        if fault not in self.known:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(self.known)}")
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        with self._lock:
            self._items.append({"fault": fault, "count": count, "device": device, **extra})

    def take(self, device: str | None, only: set[str] | None = None,
             operation: str | None = None) -> dict[str, Any] | None:
        """Consume one hit of the first fault that applies to ``device`` (and is in ``only``). A fault armed
        with ``"operation"`` waits for that operation (the card terminals: ``"reversal"``, so the soak can hit
        the emergency reversal that resolves an unknown sale, not the sale before it)."""
        with self._lock:
            for item in self._items:
                if item["device"] not in (None, device) or item.get("operation") not in (None, operation):
                    continue
                if only is not None and item["fault"] not in only:
                    continue
                item["count"] -= 1
                if item["count"] <= 0:
                    self._items.remove(item)
                return dict(item)
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(i) for i in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class EmulatorApp:
    """Base of every emulator: routes the control API, leaves the protocol to ``handle_protocol``."""

    name = "emulator"
    #: every fault this emulator knows: name -> what it does (``GET /_emulator/faults/known``)
    faults_known: dict[str, str] = {}

    def __init__(self) -> None:
        self.faults = FaultQueue(self.faults_known)

    # --- to implement -------------------------------------------------------------------------
    def handle_protocol(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def journal(self) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def control(self, request: Request, action: str) -> Response | None:
        """Emulator-specific control endpoints (e.g. ``clock``); None = not found."""
        return None

    # --- routing --------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.path.startswith("/_emulator/"):
            return self._control(request, request.path[len("/_emulator/") :].strip("/"))
        return self.handle_protocol(request)

    def _control(self, request: Request, action: str) -> Response:
        try:
            if action == "faults" and request.method == "POST":
                data = request.json()
                self.faults.add(
                    data.get("fault", ""), data.get("count", 1), data.get("device"),
                    **{k: v for k, v in data.items() if k not in {"fault", "count", "device"}},
                )
                return json_response({"ok": True, "pending": self.faults.pending()})
            if action == "faults" and request.method == "GET":
                return json_response(self.faults.pending())
            if action == "faults/known" and request.method == "GET":
                return json_response(dict(sorted(self.faults_known.items())))
            if action == "journal" and request.method == "GET":
                return json_response(self.journal())
            if action == "reset" and request.method == "POST":
                self.faults.clear()
                self.reset()
                return json_response({"ok": True})
            answer = self.control(request, action)
            if answer is not None:
                return answer
        except (ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            return json_response({"error": str(exc)}, status=400)
        return json_response({"error": f"unknown control action {action!r}"}, status=404)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; without this, Nagle + delayed ACK add ~40 ms per answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = self.server.app.handle(request)
        except Exception as exc:  # an emulator bug must show up as a 500, not a dead server
            response = json_response({"error": f"emulator crashed: {exc!r}"}, status=500)
        if response.hang_seconds:
            self.server.stopping.wait(response.hang_seconds)
        if response.drop:
            self.close_connection = True
            return
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout): nothing to answer

    do_GET = do_POST = do_DELETE = do_PUT = _serve  # noqa: N815 - stdlib naming


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: EmulatorApp, verbose: bool):
        self.app = app
        self.verbose = verbose
        self.stopping = threading.Event()
        super().__init__(address, _Handler)


class EmulatorServer:
    """Runs one emulator on ``host:port`` (port 0 = a free one) in a background thread."""

    def __init__(self, app: EmulatorApp, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.app = app
        self._server = _Server((host, port), app, verbose)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=app.name, daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        close = getattr(self.app, "close", None)
        if callable(close):
            close()


class JsonStateFile:
    """Keeps an emulator's state on disk so it survives a restart, like a real device's memory.

    Written atomically (temp file + rename) so a killed emulator never leaves half a file.
    """

    def __init__(self, path: str | None):
        self.path = path

    def load(self) -> Any | None:
        if not self.path or not os.path.exists(self.path):
            return None
        with open(self.path, encoding="utf-8") as fh:
            return json.load(fh)

    def save(self, data: Any) -> None:
        if not self.path:
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, self.path)


def sleep_unless_stopping(seconds: float) -> None:
    """Small helper for emulated device delays (kept separate so delays stay in one place)."""
    if seconds > 0:
        time.sleep(seconds)
