"""One acquiring interface for every card terminal transport, with typed results.

Wire layer only: plain Python over httpx, no Django. The two transports (``kkm_client`` for KKM Server,
``dualconnector_client`` for INPAS DualConnector's HTTP/XML service) implement ``AcquiringClient`` and
return the same result types, so the workflows above them never look at a wire format.

The rule that shapes everything here (PROTOCOLS §2.3): **an unclear exchange is UNKNOWN, never DECLINED**.
A timeout, a lost HTTP answer, a connection reset after sending, a 5xx, a malformed answer or a missing
status all give ``Outcome.UNKNOWN``; the caller must resolve it (status query, emergency reversal) before
anything else touches that terminal or order.

DECLINED is returned only when we know nothing was charged:
- the terminal/bank said so in a well-formed final answer;
- ``Reason.NOT_REACHABLE``: the TCP connection could not be opened (refused, DNS, connect timeout), so no
  byte of the request left this machine. We chose DECLINED (a known non-charge) rather than a separate
  outcome because it is exactly that: nothing reached the terminal, the order can be annulled or retried.
- ``Reason.REJECTED``: the service refused the request before running it (HTTP 401/403 from KKM Server,
  an ``<errorcode>`` answer from DualConnector).
- ``Reason.BUSY``: the terminal is running another operation and refused this one without starting it
  (KKM Server: Status 2 with an error saying busy; DualConnector: ``<errorcode>`` 5 "terminal busy").
  Nothing ran, but under our own lock it means an operation of ours is still running there: the
  workflow (payments.terminal) resolves that one first and never reads BUSY as an answer about it.

Not everything a client returns as DECLINED is "not charged" for an *earlier* operation being resolved:
only a final answer about that very operation is (payments.terminal). Two wire facts are typed for it:
- ``Reason.NOT_FOUND``: KKM Server answers GetRezult with Status 3, "no record of that IdCommand". It is
  UNKNOWN: KKM Server may lose its results when it (or the kiosk's PC) restarts, so for a command that was
  sent it proves nothing; the workflow reads it as "never received" only for one never sent.
- ``Reason.NOT_RECEIVED`` / ``Reason.NOT_APPROVED``: a DualConnector emergency cancel that names a lost
  operation (ECR id 26 + amount 00) is refused because the terminal has no operation with that ECR id, or
  because that operation, still its last, was not approved. DECLINED: both are about that very operation.

Amounts are integer kopecks in this API. The only conversion to and from rubles (KKM Server's
rubles-with-two-decimals, the emulator journals) is ``kopecks_to_rubles`` / ``rubles_to_kopecks`` below,
with Decimal, never float.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import httpx

from core.tls import ssl_context

# --- errors ---------------------------------------------------------------------------------------------


class AcquiringError(Exception):
    """Base of every error raised by the acquiring wire layer (results are returned, not raised)."""


class InvalidRequest(AcquiringError, ValueError):
    """Our own input is wrong (op id too long, amount not a positive int, unusable reference).

    Raised before anything is sent, so it never hides a charge.
    """


class NotSupported(AcquiringError):
    """The transport has no such operation (e.g. DualConnector has no status query by our id)."""


# --- results --------------------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"  # known: nothing charged / nothing done
    UNKNOWN = "unknown"  # must be resolved before the terminal or the order is touched again


class Reason(enum.StrEnum):
    """Why the outcome is what it is: machine-readable, for workflows and the panel."""

    OK = "ok"
    DECLINED = "declined"  # a final negative answer from the terminal/bank (see bank_code, message)
    NOT_REACHABLE = "not_reachable"  # connection not opened: nothing was sent (DECLINED; UNKNOWN for status())
    REJECTED = "rejected"  # refused before running: auth, malformed request (DECLINED)
    BUSY = "busy"  # refused before running: the terminal runs another operation (DECLINED for this one)
    NOT_FOUND = "not_found"  # KKM GetRezult Status 3: no record of the IdCommand (UNKNOWN: may be lost)
    NOT_RECEIVED = "not_received"  # a reversal naming a lost operation: the terminal never had it (DECLINED)
    NOT_APPROVED = "not_approved"  # a reversal naming a lost operation: it is last and not approved (DECLINED)
    TIMEOUT = "timeout"  # request sent, no answer in time (UNKNOWN)
    LOST_ANSWER = "lost_answer"  # request sent, connection dropped / reset (UNKNOWN)
    HTTP_ERROR = "http_error"  # request sent, unexpected HTTP status such as 500 (UNKNOWN)
    MALFORMED = "malformed"  # answer unreadable, no status, or not about our operation (UNKNOWN)
    IN_PROGRESS = "in_progress"  # still running when we stopped asking (UNKNOWN)
    UNCLEAR_STATUS = "unclear_status"  # a status that is neither success nor a known refusal (UNKNOWN)


class Operation(enum.StrEnum):
    SALE = "sale"
    CANCEL = "cancel"
    REFUND = "refund"
    REVERSAL = "reversal"
    SETTLEMENT = "settlement"
    CHECK = "check"
    REPORT = "report"
    STATUS = "status"


@dataclass(frozen=True)
class CardResult:
    """The result of one card operation, as the journal keeps it.

    ``reference`` is opaque: pass it (or the whole result) back to ``cancel``/``refund``/
    ``emergency_reversal``. ``raw_request``/``raw_response`` are the bodies as exchanged (never headers,
    so never the Basic-auth password).
    """

    outcome: Outcome
    reason: Reason
    operation: Operation
    op_id: str
    amount_kopecks: int = 0
    rrn: str = ""
    auth_code: str = ""
    masked_pan: str = ""
    reference: str = ""
    bank_code: str = ""
    message: str = ""
    slip: str = ""
    raw_request: str = ""
    raw_response: str = ""

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVED

    @property
    def declined(self) -> bool:
        return self.outcome is Outcome.DECLINED

    @property
    def unknown(self) -> bool:
        return self.outcome is Outcome.UNKNOWN


@dataclass(frozen=True)
class SettlementTotals:
    sale_count: int
    sale_kopecks: int
    refund_count: int
    refund_kopecks: int


@dataclass(frozen=True)
class SlipResult:
    """Result of a non-card operation that prints a slip (settlement, terminal report)."""

    outcome: Outcome
    reason: Reason
    operation: Operation
    op_id: str
    slip: str = ""
    bank_code: str = ""
    message: str = ""
    raw_request: str = ""
    raw_response: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.APPROVED


@dataclass(frozen=True)
class SettlementResult(SlipResult):
    """Сверка итогов. APPROVED = batch closed; DECLINED = failed, the terminal keeps its batch.

    ``totals`` is None: neither protocol documents machine-readable totals, the slip carries them.
    """

    totals: SettlementTotals | None = None


@dataclass(frozen=True)
class ReportResult(SlipResult):
    """A terminal report (no closing)."""


@dataclass(frozen=True)
class CheckResult:
    """Connectivity: ``reachable`` = the service answered; ``ok`` = the terminal (and its host) are fine."""

    ok: bool
    reachable: bool
    reason: Reason
    op_id: str
    bank_code: str = ""
    message: str = ""
    raw_request: str = ""
    raw_response: str = ""


# --- the interface --------------------------------------------------------------------------------------

Original = CardResult | str  # an approved CardResult, or its ``reference``


@dataclass(frozen=True)
class LostOperation:
    """An operation whose answer was lost: our id for it (saved before the call) and its amount."""

    op_id: str
    amount_kopecks: int


class AcquiringClient(abc.ABC):
    """One card terminal. One operation at a time (the caller serialises across workers).

    Every ``op_id`` must be saved by the caller before the call and is unique per operation.
    """

    #: whether ``status`` works (KKM Server: yes; DualConnector: no, it raises NotSupported)
    supports_status: bool = False
    #: whether ``emergency_reversal`` can name the lost operation, so that the terminal refuses when its last
    #: operation is another one (DualConnector: ECR id + amount; KKM Server: no such field)
    names_lost_operation: bool = False

    @abc.abstractmethod
    def sale(self, op_id: str, amount_kopecks: int, order_number: str) -> CardResult: ...

    @abc.abstractmethod
    def cancel(self, op_id: str, amount_kopecks: int, original: Original) -> CardResult:
        """Same-day cancel, only before the terminal's settlement; after it, use ``refund``."""

    @abc.abstractmethod
    def refund(self, op_id: str, amount_kopecks: int, original: Original) -> CardResult:
        """Full or partial refund, any day."""

    @abc.abstractmethod
    def emergency_reversal(self, op_id: str, original: Original | None = None,
                           lost: LostOperation | None = None) -> CardResult:
        """Cancel the terminal's LAST operation after an unclear outcome (works only while it is last).

        ``lost`` names the operation whose answer was lost, where the transport can carry it, so that
        the terminal refuses when its last operation is another one (our lost request never got there).
        """

    @abc.abstractmethod
    def settlement(self, op_id: str) -> SettlementResult: ...

    @abc.abstractmethod
    def check(self, op_id: str) -> CheckResult: ...

    @abc.abstractmethod
    def status(self, op_id: str) -> CardResult:
        """The final result of an earlier operation by its op id, where the transport has a query."""

    def report(self, op_id: str, detailed: bool = False) -> ReportResult:
        raise NotSupported(f"{type(self).__name__} has no terminal report")


# --- money: the one place where kopecks meet rubles -----------------------------------------------------

_CENT = Decimal("0.01")


def kopecks_to_rubles(kopecks: int) -> Decimal:
    """18900 -> Decimal('189.00')."""
    if isinstance(kopecks, bool) or not isinstance(kopecks, int):
        raise InvalidRequest(f"amount must be integer kopecks, got {kopecks!r}")
    return (Decimal(kopecks) / 100).quantize(_CENT)


def rubles_to_kopecks(rubles: Decimal | int | str) -> int:
    """Decimal('189.00') / 189 / '189.5' -> kopecks; refuses floats and fractions of a kopeck."""
    if isinstance(rubles, bool) or isinstance(rubles, float):
        raise InvalidRequest(f"rubles must be Decimal, int or str, never float: {rubles!r}")
    try:
        value = rubles if isinstance(rubles, Decimal) else Decimal(str(rubles).strip())
    except InvalidOperation as exc:
        raise InvalidRequest(f"not an amount: {rubles!r}") from exc
    kopecks = value * 100
    if not kopecks.is_finite() or kopecks != kopecks.to_integral_value():
        raise InvalidRequest(f"not a whole number of kopecks: {rubles!r}")
    return int(kopecks)


def format_rubles(kopecks: int) -> str:
    """18900 -> '189.00' (journals, slips)."""
    return f"{kopecks_to_rubles(kopecks):.2f}"


def validate_amount(amount_kopecks: int) -> int:
    if isinstance(amount_kopecks, bool) or not isinstance(amount_kopecks, int) or amount_kopecks <= 0:
        raise InvalidRequest(f"amount must be a positive integer of kopecks, got {amount_kopecks!r}")
    return amount_kopecks


def reference_of(original: Original) -> str:
    """The opaque reference of an earlier approved operation."""
    if isinstance(original, CardResult):
        if not original.approved:
            raise InvalidRequest(f"operation {original.op_id} was not approved ({original.outcome})")
        reference = original.reference
    else:
        reference = original
    if not isinstance(reference, str) or not reference.strip():
        raise InvalidRequest("the original operation has no reference")
    return reference


# --- one HTTP exchange, classified -----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpExchange:
    """What happened to one POST: an answer (status, body), or why there is none."""

    failure: Reason | None  # None = we got an HTTP answer
    status_code: int = 0
    body: bytes = b""
    content_type: str = ""
    detail: str = ""

    @property
    def answered(self) -> bool:
        return self.failure is None


def post_once(
    url: str,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
    connect_timeout: float,
    auth: tuple[str, str] | None = None,
) -> HttpExchange:
    """POST once, never retried: a retry of a card payment could charge twice.

    A fresh connection per call, so a ConnectError always means "nothing was sent" (a reused keep-alive
    connection that died would blur that line). Only the TLS context is shared (core.tls): building
    one per call cost more than the whole exchange with a terminal on the LAN.
    """
    timeouts = httpx.Timeout(timeout, connect=min(connect_timeout, timeout) if timeout else connect_timeout)
    try:
        with httpx.Client(timeout=timeouts, auth=auth, trust_env=False, verify=ssl_context()) as client:
            answer = client.post(url, content=content, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as exc:
        return HttpExchange(Reason.NOT_REACHABLE, detail=f"{type(exc).__name__}: {exc}")
    except httpx.TimeoutException as exc:  # read/write timeout: the request (or part of it) went out
        return HttpExchange(Reason.TIMEOUT, detail=f"{type(exc).__name__}: {exc}")
    except httpx.TransportError as exc:  # reset, remote closed without answer, protocol error
        return HttpExchange(Reason.LOST_ANSWER, detail=f"{type(exc).__name__}: {exc}")
    return HttpExchange(
        None, status_code=answer.status_code, body=answer.content, content_type=answer.headers.get("content-type", "")
    )
