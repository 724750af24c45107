"""ATOL Web Server client (driver v10 JSON tasks over HTTP), PROTOCOLS.md §1.

Plain Python over httpx, no Django. The caller creates the task uuid and saves it *before* calling
``execute``: a crash at any point is then resumed with ``execute(uuid, tasks, resume=True)``, which
asks for the task by that uuid first and re-POSTs the same uuid only if the server never saw it
(a repeated uuid is answered 409 "already queued" and simply polled). A task is never re-sent under
a new uuid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import httpx

from core import wirejson
from core.tls import ssl_context
from fiscal.atol_errors import (
    AtolAuthError,
    AtolBadAnswer,
    AtolCanceled,
    AtolConnectionLost,
    AtolDeviceError,
    AtolError,
    AtolNotFound,
    AtolOutcomeUnknown,
    AtolRejected,
    AtolStillBlocked,
    AtolTimeout,
    AtolUnreachable,
    device_error,
)

# The first polls after a POST come sooner than ``poll_interval``: a query task (getShiftStatus) or a
# document on a fast register is often ready within tens of milliseconds, and one fixed pause of
# poll_interval (0.3 s) after the first "not yet" was most of such a task's time. A few more GETs on the
# LAN cost nothing; slow tasks (printing) are then polled every ``poll_interval`` as before. The first pause is
# short (5 ms): a task the register finishes in a millisecond or two (a receipt at no print delay, a shift status)
# was otherwise waited for 20 ms more than it took, on top of the checkout's own time (issue 15).
FIRST_POLL_PAUSES = (0.005, 0.02, 0.05, 0.1, 0.2)

FISCAL_TASKS = frozenset(
    {"sell", "sellReturn", "buy", "buyReturn", "sellCorrection", "sellReturnCorrection", "openShift", "closeShift"}
)


class TaskStatus(StrEnum):
    WAIT = "wait"
    IN_PROGRESS = "inProgress"
    READY = "ready"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    BLOCKED = "blocked"
    CANCELED = "canceled"


FINAL_STATUSES = frozenset({TaskStatus.READY, TaskStatus.ERROR, TaskStatus.INTERRUPTED, TaskStatus.CANCELED})


@dataclass(frozen=True)
class FiscalParams:
    """What the register gave a fiscal document (``result.fiscalParams``)."""

    fiscal_document_number: int
    fiscal_document_sign: str
    fiscal_receipt_number: int | None
    shift_number: int | None
    date_time: str
    fn_number: str
    registration_number: str
    total: Decimal | None
    fns_url: str
    receipts_count: int | None = None

    @classmethod
    def from_result(cls, result: dict[str, Any] | None) -> FiscalParams | None:
        params = (result or {}).get("fiscalParams")
        if not isinstance(params, dict) or "fiscalDocumentNumber" not in params:
            return None
        total = params.get("total")
        return cls(
            fiscal_document_number=int(params["fiscalDocumentNumber"]),
            fiscal_document_sign=str(params.get("fiscalDocumentSign", "")),
            fiscal_receipt_number=_opt_int(params.get("fiscalReceiptNumber")),
            shift_number=_opt_int(params.get("shiftNumber")),
            date_time=str(params.get("fiscalDocumentDateTime", "")),
            fn_number=str(params.get("fnNumber", "")),
            registration_number=str(params.get("registrationNumber", "")),
            # Answers are parsed with parse_float=Decimal (wirejson.loads): no float on the way.
            total=Decimal(str(total)) if total is not None else None,
            fns_url=str(params.get("fnsUrl", "")),
            receipts_count=_opt_int(params.get("receiptsCount")),
        )


@dataclass(frozen=True)
class SubTaskResult:
    status: TaskStatus
    result: dict[str, Any] | None
    error_code: int | None = None
    error_description: str = ""

    @property
    def fiscal_params(self) -> FiscalParams | None:
        return FiscalParams.from_result(self.result)

    @property
    def not_printed(self) -> bool:
        warnings = (self.result or {}).get("warnings") or {}
        return bool(warnings.get("notPrinted"))


@dataclass(frozen=True)
class TaskOutcome:
    """The final state of one request (one entry per sub-task); ``raw`` is the server's answer."""

    uuid: str
    results: list[SubTaskResult]
    raw: str = ""

    @property
    def first(self) -> SubTaskResult:
        return self.results[0]

    @property
    def ok(self) -> bool:
        return all(r.status == TaskStatus.READY for r in self.results)

    def error(self) -> AtolDeviceError | None:
        """The typed error of the first sub-task that did not end ``ready``, if any."""
        for sub in self.results:
            if sub.status == TaskStatus.READY:
                continue
            if sub.status == TaskStatus.CANCELED:
                return AtolCanceled("Задание отменено", uuid=self.uuid, raw=self.raw)
            code = sub.error_code
            if code is None:
                code = 502 if sub.status == TaskStatus.INTERRUPTED else 0
            return device_error(code, sub.error_description or sub.status.value, uuid=self.uuid, raw=self.raw)
        return None

    def raise_for_error(self) -> TaskOutcome:
        err = self.error()
        if err is not None:
            raise err
        return self


@dataclass(frozen=True)
class Submission:
    number: int | None
    is_blocked: bool
    blocked_uuid: str
    already_queued: bool  # 409: an earlier POST with this uuid had arrived


@dataclass(frozen=True)
class QueueStatus:
    is_blocked: bool
    block_reason: str
    blocked_uuid: str


@dataclass
class AtolClient:
    base_url: str
    device_id: str = ""
    username: str = ""
    password: str = ""
    timeout: float = 10.0
    poll_interval: float = 0.3
    max_wait: float = 120.0
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        auth = httpx.BasicAuth(self.username, self.password) if self.username else None
        self._http = httpx.Client(
            base_url=self.base_url.rstrip("/"), auth=auth, timeout=self.timeout, transport=self.transport,
            verify=ssl_context(),  # built once per process (core.tls): a client per session stays cheap
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AtolClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the queue -----------------------------------------------------------------------------
    def submit(self, uuid: str, tasks: list[dict[str, Any]]) -> Submission:
        """POST a request. 409 means the uuid is already queued: that is success, poll it."""
        if sum(1 for t in tasks if t.get("type") in FISCAL_TASKS) > 1:
            raise AtolRejected("Не больше одного фискального задания в запросе", uuid=uuid)
        body = wirejson.dumps({"uuid": uuid, "request": tasks}).encode("utf-8")
        answer = self._call(
            "POST", "/api/v2/requests", uuid=uuid, content=body, headers={"Content-Type": "application/json"}
        )
        if answer.status_code == 409:
            return Submission(None, False, "", already_queued=True)
        if answer.status_code == 400:
            raise AtolRejected(f"ATOL Web Server отклонил запрос: {answer.text[:500]}", uuid=uuid, raw=answer.text)
        data = self._expect_json(answer, {201, 200}, uuid)
        return Submission(
            number=_opt_int(data.get("number")),
            is_blocked=bool(data.get("isBlocked", False)),
            blocked_uuid=str(data.get("blockedUUID") or ""),
            already_queued=False,
        )

    def get(self, uuid: str) -> TaskOutcome | None:
        """The current state of a request; None if the server does not know the uuid (404)."""
        answer = self._call("GET", f"/api/v2/requests/{uuid}", uuid=uuid)
        if answer.status_code == 404:
            return None
        data = self._expect_json(answer, {200}, uuid)
        results = data.get("results")
        if not isinstance(results, list) or not results:
            raise AtolBadAnswer("В ответе нет results", uuid=uuid, raw=answer.text)
        return TaskOutcome(uuid, [_parse_sub_result(r, uuid, answer.text) for r in results], raw=answer.text)

    def cancel(self, uuid: str) -> bool:
        """Cancel a request still waiting in the queue; False if it already started or finished."""
        answer = self._call("DELETE", f"/api/v2/requests/{uuid}", uuid=uuid)
        if answer.status_code in (200, 204):
            return True
        if answer.status_code in (405, 409):
            return False
        if answer.status_code == 404:
            raise AtolNotFound("Задание не найдено", uuid=uuid)
        raise AtolBadAnswer(f"HTTP {answer.status_code} на DELETE", uuid=uuid, raw=answer.text)

    def wait(
        self, uuid: str, max_wait: float | None = None, *, repost: list[dict[str, Any]] | None = None
    ) -> TaskOutcome:
        """Poll until every sub-task is final, within ``max_wait`` seconds.

        ``blocked`` is polled like ``inProgress``: the server finishes it as ``ready`` or ``error``
        once the register answers. GET failures are retried until the bound. A 404 means our POST
        never arrived: with ``repost`` given the same uuid is POSTed again, else AtolNotFound.
        When the bound is reached the outcome is still unknown (AtolStillBlocked / AtolTimeout).
        """
        deadline = time.monotonic() + (self.max_wait if max_wait is None else max_wait)
        last_error: AtolError | None = None
        blocked = False
        pauses = iter(FIRST_POLL_PAUSES)
        while True:
            try:
                outcome = self.get(uuid)
                last_error = None
                if outcome is None:
                    if repost is None:
                        raise AtolNotFound("ATOL Web Server не знает это задание", uuid=uuid)
                    self.submit(uuid, repost)
                else:
                    if all(r.status in FINAL_STATUSES for r in outcome.results):
                        return outcome
                    blocked = any(r.status == TaskStatus.BLOCKED for r in outcome.results)
            except (AtolTimeout, AtolConnectionLost, AtolUnreachable, AtolBadAnswer) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                break
            self.sleep(min(next(pauses, self.poll_interval), self.poll_interval))
        if blocked:
            raise AtolStillBlocked("Задание заблокировано: ККТ ещё не ответила, сделан ли документ", uuid=uuid)
        if last_error is not None:
            # Whatever broke the polling, the task itself may have been done: the outcome is unknown.
            unknown = type(last_error) if isinstance(last_error, AtolOutcomeUnknown) else AtolConnectionLost
            raise unknown(f"{last_error} (опрос прерван по времени)", uuid=uuid, raw=last_error.raw)
        raise AtolTimeout("Задание не завершилось за отведённое время", uuid=uuid)

    def execute(
        self, uuid: str, tasks: list[dict[str, Any]], *, resume: bool = False, max_wait: float | None = None
    ) -> TaskOutcome:
        """Send (or resume) a request under ``uuid`` and wait for its final outcome.

        Never raises for a driver error: the outcome carries it (``outcome.error()``), so the
        caller can journal it. Raises AtolOutcomeUnknown subclasses when the outcome is unknown,
        and AtolUnreachable / AtolAuthError / AtolRejected when nothing was queued.
        """
        if not resume:
            try:
                self.submit(uuid, tasks)
            except (AtolTimeout, AtolConnectionLost, AtolBadAnswer):
                pass  # the POST may have arrived: polling the same uuid tells (404 → re-POST)
        return self.wait(uuid, max_wait, repost=tasks)

    def run(self, uuid: str, task: dict[str, Any], *, max_wait: float | None = None) -> dict[str, Any]:
        """Execute one task and return its driver result, raising the typed error if it failed."""
        outcome = self.execute(uuid, [task], max_wait=max_wait).raise_for_error()
        return outcome.first.result or {}

    # --- outside the queue -------------------------------------------------------------------
    def queue_status(self) -> QueueStatus:
        answer = self._call("GET", "/api/v2/getRequestsQueueStatus")
        data = self._expect_json(answer, {200}, None)
        return QueueStatus(
            is_blocked=bool(data.get("isBlocked", False)),
            block_reason=str(data.get("blockReason") or ""),
            blocked_uuid=str(data.get("blockedUUID") or ""),
        )

    def server_info(self) -> dict[str, Any]:
        return self._expect_json(self._call("GET", "/api/v2/serverInfo", device=False), {200}, None)

    def query(self, operation: str) -> dict[str, Any]:
        """Synchronous ``operations/query*`` call (queryShiftStatus, queryDeviceStatus, queryFnStatus)."""
        if operation not in {"queryShiftStatus", "queryDeviceStatus", "queryFnStatus"}:
            raise ValueError(f"unknown ATOL operation {operation!r}")
        return self._expect_json(self._call(
            "POST", f"/api/v2/operations/{operation}", content=b"{}", headers={"Content-Type": "application/json"}
        ), {200}, None)

    # --- plumbing ------------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, *, uuid: str | None = None, device: bool = True, **kwargs: Any
    ) -> httpx.Response:
        params = {"deviceID": self.device_id} if device and self.device_id else None
        try:
            answer = self._http.request(method, path, params=params, **kwargs)
        except httpx.ConnectError as exc:
            raise AtolUnreachable(f"ATOL Web Server недоступен: {exc}", uuid=uuid) from exc
        except httpx.TimeoutException as exc:
            raise AtolTimeout(f"ATOL Web Server не ответил вовремя ({method} {path})", uuid=uuid) from exc
        except httpx.TransportError as exc:  # connection dropped mid-exchange: the answer was lost
            raise AtolConnectionLost(f"Ответ ATOL Web Server потерян: {exc!r}", uuid=uuid) from exc
        if answer.status_code == 401:
            raise AtolAuthError("ATOL Web Server: неверный пользователь или пароль веб-запросов", uuid=uuid)
        return answer

    @staticmethod
    def _expect_json(answer: httpx.Response, statuses: set[int], uuid: str | None) -> dict[str, Any]:
        if answer.status_code not in statuses:
            raise AtolBadAnswer(f"Неожиданный ответ HTTP {answer.status_code}", uuid=uuid, raw=answer.text[:2000])
        try:
            data = wirejson.loads(answer.content)
        except ValueError:
            raise AtolBadAnswer("Ответ не является JSON", uuid=uuid, raw=answer.text[:2000]) from None
        if not isinstance(data, dict):
            raise AtolBadAnswer("Ответ не является JSON-объектом", uuid=uuid, raw=answer.text[:2000])
        return data


def _parse_sub_result(entry: Any, uuid: str, raw: str) -> SubTaskResult:
    if not isinstance(entry, dict):
        raise AtolBadAnswer("Элемент results не является объектом", uuid=uuid, raw=raw)
    status_value: Any = entry.get("status")  # whatever the register sent: TaskStatus refuses the unknown
    try:
        status = TaskStatus(status_value)
    except ValueError:
        raise AtolBadAnswer(f"Неизвестный статус задания {entry.get('status')!r}", uuid=uuid, raw=raw) from None
    code, description = _read_error(entry)
    result = entry.get("result")
    return SubTaskResult(status, result if isinstance(result, dict) else None, code, description)


def _read_error(entry: dict[str, Any]) -> tuple[int | None, str]:
    """Both shapes seen in the wild: nested ``error: {code, description}`` and flat ``errorCode``."""
    nested = entry.get("error")
    if isinstance(nested, dict):
        code, description = nested.get("code"), nested.get("description", "")
    else:
        code, description = entry.get("errorCode"), entry.get("errorDescription", "")
    code = _opt_int(code)
    if code == 0:
        code = None
    return code, str(description or "")


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
