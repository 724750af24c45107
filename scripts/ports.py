"""A free TCP port for a server that another process binds later: gunicorn in the bench, the soak and the
production test, the marking check service of the soak.

``bind(("127.0.0.1", 0))`` gives a port of the kernel's ephemeral range. Between reading that port and the
server's own bind, any outgoing connection of the machine may be given it as its local port: the clusters
connecting to PostgreSQL and Redis while gunicorn starts did, and gunicorn died with "Address already in use"
(`make bench`, 2026-12-07). Below that range the kernel gives no outgoing connection a port, so the port is
drawn there and checked free by binding it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT = (32768, 60999)
LOWEST = 10000  # below: the well-known and the registered ports that local services use (5432, 6379, 8000…)


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT
    return low, high


def outside_ephemeral() -> range:
    """The ports a server may take without racing the machine's outgoing connections."""
    low, high = ephemeral_range()
    below, above = range(LOWEST, low), range(high + 1, 65536)
    return below if len(below) >= len(above) else above


def free_port(attempts: int = 200) -> int:
    ports = outside_ephemeral()
    for port in random.sample(ports, min(attempts, len(ports))):  # spreads parallel runs; not a secret
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # the whole machine is in the ephemeral range: the old way, with its race
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
