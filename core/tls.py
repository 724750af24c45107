"""One TLS context per process, shared by every outgoing httpx client (wire layer: no Django).

httpx builds a new ``ssl.SSLContext`` for each ``httpx.Client`` it creates, loading the whole CA bundle
each time (~20-30 ms of CPU), even for the plain-http devices on the venue LAN that never use it. The
checkout makes several clients per order (a register session, every card terminal POST, ...), so that
load was most of the checkout's own time (issue 7). A context holds settings and CA certificates only,
no connection state: one context is safely shared by any number of clients and threads.

Floor: bottom (``core``, shared by every room); imports nothing of ``fiscal``, ``payments``, ``iiko`` or
``nekassir`` (import-linter, pyproject.toml).
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """What httpx would build by default (certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR), built once."""
    return httpx.create_ssl_context()
