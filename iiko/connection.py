"""A kiosk's iiko Cloud client, made from its settings (``Kiosk.iiko`` and the kiosk's organization and terminal
group), and the copy each process keeps for reuse. Used by the delivery of orders (top floor) and the checks."""

from __future__ import annotations

import os
import threading

from django.conf import settings

from core.models import IikoConnection, Kiosk
from iiko.client import IikoClient


class IikoNotConfigured(Exception):
    pass


def _connection(kiosk: Kiosk) -> IikoConnection:
    connection = kiosk.iiko
    if connection is None or not kiosk.iiko_organization_id or not kiosk.iiko_terminal_group_id:
        raise IikoNotConfigured(f"{kiosk.code}: подключение к iiko не настроено")
    return connection


def make_iiko_client(kiosk: Kiosk) -> IikoClient:
    connection = _connection(kiosk)
    return IikoClient(
        base_url=connection.base_url, api_login=connection.api_login or None, app_id=connection.app_id or None,
        client_secret=connection.client_secret or None, api_key=connection.api_key or None,
        timeout=settings.IIKO_HTTP_TIMEOUT,
    )


# One client per iiko account, kept by each process between orders: its token (lives 1 h; the client
# renews it after 50 min or on a 401) and its keep-alive connection are reused, instead of one token
# request and one TLS handshake to iiko Cloud per order. That keeps the contract: a pooled connection
# that iiko closed is either dropped before anything is sent (httpcore checks it) or fails as a lost
# answer, which is already an attempt in doubt, checked by its id before anything else.
_shared_clients: dict[tuple, IikoClient] = {}
_shared_pid = 0
_shared_lock = threading.Lock()


def shared_iiko_client(kiosk: Kiosk) -> IikoClient:
    """``make_iiko_client`` kept for reuse (thread-safe; never close it). Raises IikoNotConfigured."""
    global _shared_pid
    connection = _connection(kiosk)
    key = (connection.base_url, connection.api_login, connection.app_id, connection.client_secret,
           connection.api_key, settings.IIKO_HTTP_TIMEOUT)
    with _shared_lock:
        if _shared_pid != os.getpid():  # a forked worker must not use its parent's sockets
            _shared_clients.clear()
            _shared_pid = os.getpid()
        client = _shared_clients.get(key)
        if client is None:
            client = make_iiko_client(kiosk)
            if len(_shared_clients) >= 8:
                # Credentials edited in the admin leave old entries: dropped, not closed (a thread may
                # still be using one; its sockets close when it is collected).
                _shared_clients.clear()
            _shared_clients[key] = client
    return client
