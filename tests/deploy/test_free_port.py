"""The port a bench, soak or production-test stack gives gunicorn (scripts/ports.py): never one of the kernel's
ephemeral ports, which an outgoing connection may take between the choice and gunicorn's bind (`make bench`,
2026-12-07: "Connection in use: ('127.0.0.1', 39907)", the clusters connecting to PostgreSQL meanwhile)."""

from __future__ import annotations

import socket

from scripts import bench, ports, soak_stack
from scripts.bench import stack


def test_the_port_is_free_and_outside_the_ephemeral_range():
    low, high = ports.ephemeral_range()
    for _ in range(50):
        port = ports.free_port()
        assert not low <= port <= high and port >= ports.LOWEST
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free: a server can take it


def test_the_ephemeral_range_is_the_kernels():
    low, high = (int(part) for part in ports.EPHEMERAL_RANGE.read_text().split())
    assert ports.ephemeral_range() == (low, high)
    assert 1024 < low < high < 65536


def test_every_stack_takes_its_port_from_there():
    assert soak_stack.free_port is ports.free_port and stack.free_port is ports.free_port
    assert not hasattr(bench.common, "free_port")


def test_the_range_is_read_with_care_and_the_larger_side_is_taken(monkeypatch, tmp_path):
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports.ephemeral_range() == ports.LINUX_DEFAULT
    kernel = tmp_path / "ip_local_port_range"
    kernel.write_text("1024\t50000\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", kernel)
    assert ports.outside_ephemeral() == range(50001, 65536)  # nothing below 1024 is ours to take
    kernel.write_text("1024\t65535\n")
    assert len(ports.outside_ephemeral()) == 0
    port = ports.free_port()  # no port outside: the kernel's choice, as before
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
