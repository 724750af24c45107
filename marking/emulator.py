"""An emulator of the marking operator's permissive-mode check service, over real HTTP, for tests and the demo.

Speaks the wire protocol of ``marking/client.py`` (see its docstring for what is confirmed):
``POST /api/v4/true-api/codes/check`` with ``X-API-KEY`` and ``{"codes": [...]}``, answering per code from
the shared ``OperatorRegistry`` (the code table the ATOL emulator validates against too), with ``reqId`` and
``reqTimestamp`` like the real service. A missing or wrong key is a 401, a malformed body a 400.

Faults (``POST /_emulator/faults {"fault", "count"}``; ``GET /_emulator/faults/known`` lists them):

* ``unavailable``: the next check is answered 503 (the service is down);
* ``slow``: the next check is answered after ``seconds`` (default 30): the client's timeout fires first;
* ``lost_answer``: the next check's connection is dropped without an answer.

Control API besides faults/journal/reset: ``POST /_emulator/codes {"gtin", "status", "count"}`` mints fresh
codes in that state (``{"codes": [...]}``), ``POST /_emulator/codes/status {"code", "status"}`` sets one
code's state, ``GET /_emulator/codes/status?code=...`` tells it, ``GET /_emulator/codes`` lists the table.
``reset`` clears the journal and the faults, never the code table (the world's state, shared with ATOL).

Floor: middle, the marking room (``marking``); imports only the bottom (``core``) (import-linter,
pyproject.toml).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from core.emulator_http import (
    EmulatorApp,
    Request,
    Response,
    json_response,
    lost_answer,
)
from core.gs1 import InvalidMarkingCode, parse_code
from marking.client import DEFAULT_CHECK_PATH
from marking.operator import OperatorRegistry

DEMO_TOKEN = "00000000-demo-0000-mark-000000000000"  # noqa: S105 - the emulator's public demo key (36 chars)

FAULTS = {
    "unavailable": "следующая проверка кодов получает 503: служба проверки недоступна",
    "slow": "следующая проверка кодов отвечает через seconds (по умолчанию 30): у клиента таймаут",
    "lost_answer": "следующая проверка кодов: соединение рвётся без ответа",
}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class MarkingCheckEmulator(EmulatorApp):
    name = "marking"
    faults_known = FAULTS

    def __init__(
        self, operator: OperatorRegistry | None = None, *, token: str = DEMO_TOKEN,
        check_path: str = DEFAULT_CHECK_PATH, journal_size: int = 5000,
    ):
        super().__init__()
        self.operator = operator if operator is not None else OperatorRegistry()
        self.token = token
        self.check_path = "/" + check_path.lstrip("/")
        self._journal: deque[dict[str, Any]] = deque(maxlen=journal_size)
        self._lock = threading.Lock()

    # --- protocol ----------------------------------------------------------------------------------
    def handle_protocol(self, request: Request) -> Response:
        if request.path != self.check_path:
            return json_response({"code": 404, "description": f"no such method {request.path}"}, status=404)
        if request.method != "POST":
            return json_response({"code": 405, "description": "POST only"}, status=405)
        if request.headers.get("x-api-key") != self.token:
            self._log({"status": 401, "error": "bad or missing X-API-KEY"})
            return json_response({"code": 401, "description": "Доступ запрещён: неверный X-API-KEY"}, status=401)
        try:
            body = request.json()
            codes = body["codes"]
            if not isinstance(codes, list) or not codes or not all(isinstance(c, str) and c for c in codes):
                raise ValueError("codes must be a non-empty list of strings")
        except (ValueError, KeyError, TypeError) as exc:
            self._log({"status": 400, "error": str(exc)})
            return json_response({"code": 400, "description": f"Некорректный запрос: {exc}"}, status=400)
        fault = self.faults.take(None)
        kind = fault["fault"] if fault else None
        if kind == "unavailable":
            self._log({"status": 503, "codes": codes, "fault": kind})
            return json_response({"code": 503, "description": "Service Unavailable"}, status=503)
        if kind == "lost_answer":
            self._log({"status": None, "codes": codes, "fault": kind})
            return lost_answer()
        answer = self._answer(codes)
        self._log({"status": 200, "codes": codes, "fault": kind, "reqId": answer["reqId"],
                   "statuses": {e["cis"]: e["_status"] for e in answer["codes"]}})
        for entry in answer["codes"]:
            del entry["_status"]
        response = json_response(answer)
        if kind == "slow":
            response.hang_seconds = float((fault or {}).get("seconds", 30.0))
        return response

    def _answer(self, codes: list[str]) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "code": 0, "description": "ok",
            "codes": [self._code_entry(raw, now) for raw in codes],
            "reqId": str(uuid.uuid4()), "reqTimestamp": int(time.time() * 1000),
        }

    def _code_entry(self, raw: str, now: datetime) -> dict[str, Any]:
        status = self.operator.code_status(raw)
        try:
            code = parse_code(raw)
            gtin, print_view, well_formed = code.gtin, f"01{code.gtin}21{code.serial}", True
        except InvalidMarkingCode:
            gtin, print_view, well_formed = raw[2:16], raw, False
        found = status != "not_found"
        entry: dict[str, Any] = {
            "cis": raw, "valid": well_formed, "printView": print_view, "gtin": gtin, "groupIds": [],
            "verified": found, "found": found, "realizable": status in ("valid", "expired", "blocked"),
            "utilised": found, "isBlocked": status == "blocked",
            "expireDate": _iso(now - timedelta(days=3) if status == "expired" else now + timedelta(days=180)),
            "productionDate": _iso(now - timedelta(days=30)), "isOwner": found, "errorCode": 0,
            "isTracking": False, "sold": status == "sold", "packageType": "UNIT", "grayZone": False,
            "_status": status,
        }
        if not found:
            del entry["expireDate"], entry["productionDate"]
        return entry

    # --- control -----------------------------------------------------------------------------------
    def control(self, request: Request, action: str) -> Response | None:
        if action == "codes" and request.method == "POST":
            data = request.json()
            count = data.get("count", 1)
            minted = self.operator.mint(str(data["gtin"]), str(data.get("status", "valid")), count)
            return json_response({"codes": minted})
        if action == "codes" and request.method == "GET":
            return json_response(self.operator.known())
        if action == "codes/status" and request.method == "POST":
            data = request.json()
            self.operator.set_status(data["code"], str(data["status"]))
            return json_response({"ok": True, "code": data["code"], "status": data["status"]})
        if action == "codes/status" and request.method == "GET":
            raw = request.query["code"]
            return json_response({"code": raw, "status": self.operator.code_status(raw)})
        return None

    def journal(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._journal)

    def reset(self) -> None:
        with self._lock:
            self._journal.clear()

    def _log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._journal.append({"at": datetime.now(UTC).isoformat(), **entry})
