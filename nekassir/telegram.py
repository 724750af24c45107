"""A minimal Telegram Bot API client: ``sendMessage`` to one chat, over httpx with a timeout.

Plain Python, no Django. The bot token is part of every Bot API URL, so it must never reach a log or an
error message: no URL is ever put in one, httpx's own exceptions are reduced to their type, and whatever
text does come back is scrubbed of the token before it is shown. ``repr`` leaves the token out too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from core.tls import ssl_context

DEFAULT_API_URL = "https://api.telegram.org"
MAX_MESSAGE_LENGTH = 4096  # Bot API limit for a message's text, in characters


class TelegramError(Exception):
    """The message was not accepted. ``retry_after``: seconds Telegram asked to wait (HTTP 429)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class SentMessage:
    message_id: int
    chat_id: str


class TelegramClient:
    def __init__(self, token: str, *, api_url: str = DEFAULT_API_URL, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None):
        if not token:
            raise ValueError("a bot token is required")
        self._token = token
        self._base = api_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, transport=transport, trust_env=False, verify=ssl_context())

    def __repr__(self) -> str:
        return f"<TelegramClient {self._base}>"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TelegramClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_message(self, chat_id: str | int, text: str) -> SentMessage:
        """Send ``text`` (plain text, no markup) to ``chat_id``; raises TelegramError when not accepted."""
        if not text or len(text) > MAX_MESSAGE_LENGTH:
            raise ValueError(f"a message is 1..{MAX_MESSAGE_LENGTH} characters, got {len(text)}")
        body = {"chat_id": chat_id, "text": text, "disable_web_page_preview": True}
        data = self._call("sendMessage", body)
        result = data.get("result") or {}
        return SentMessage(int(result.get("message_id") or 0), str((result.get("chat") or {}).get("id", chat_id)))

    def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self._http.post(f"{self._base}/bot{self._token}/{method}", json=body)
        except httpx.TimeoutException:
            raise TelegramError("Telegram не ответил вовремя") from None
        except httpx.HTTPError as exc:
            # The exception's text may carry the URL, and so the token: keep only its type.
            raise TelegramError(f"Telegram недоступен ({type(exc).__name__})") from None
        try:
            data = answer.json()
        except ValueError:
            data = {}
        if answer.status_code == 200 and isinstance(data, dict) and data.get("ok") is True:
            return data
        description = self._scrub(str(data.get("description") or "")) if isinstance(data, dict) else ""
        parameters = (data.get("parameters") or {}) if isinstance(data, dict) else {}
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        raise TelegramError(f"Telegram отказал: HTTP {answer.status_code} {description}".strip(),
                            status=answer.status_code,
                            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***")[:300]
