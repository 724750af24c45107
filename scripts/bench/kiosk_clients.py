"""The clients of the 30-kiosk run: kiosks that post an order and poll its status, and a manager's venue page.

    python -m scripts.bench.kiosk_clients --spec spec.json --out out.json

Run by scripts/bench/kiosks30.py in a process of its own (``--clients inline`` runs the same code in the
emulators' process instead, to compare). No Django here: plain ``http.client`` keep-alive connections, the
lightest client the standard library has, so that what is measured is the server, not the client.

* ``mode: "idle"``: ``count`` GETs of one order's status URL, one every ``every`` seconds, on one connection;
* ``mode: "load"``: at ``start_at`` (``time.monotonic()``, which is system-wide: the driver's clock too) every
  kiosk posts its orders one after another (``POST /api/v1/orders``) and polls each one's status every
  ``poll`` seconds until it is final, as a kiosk does; meanwhile a manager, logged in (the cookies are given),
  opens the venue page ``/`` and polls every htmx fragment the page declares (``hx-get`` with ``hx-trigger``
  ``every Ns``, and ``load``) at the page's own intervals, over at most 6 connections (a browser's limit per
  host), until the kiosks are done.

A request on a kept-alive connection the server has just closed (gunicorn closes idle connections, and a
worker recycled after ``max_requests`` closes its own) is sent once more on a new connection, as a browser
does; such retries are counted (``reconnects``), their time included in the request's latency.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FINAL = {"completed", "cancelled", "failed", "not_delivered"}
BROWSER_CONNECTIONS = 6
_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.BadStatusLine)
_TAG = re.compile(r"<[^>]*\bhx-get=[^>]*>", re.S)
_ATTR = re.compile(r'\b(hx-get|hx-trigger)="([^"]*)"')
_EVERY = re.compile(r"every\s+(\d+(?:\.\d+)?)(ms|s)\b")


class Connection:
    """One keep-alive HTTP/1.1 connection with fixed headers (a kiosk's token, a manager's cookies)."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float = 30.0):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = headers
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        """(HTTP status, body, seconds from the first byte sent to the last byte read)."""
        t0 = time.monotonic()
        for attempt in (0, 1):
            fresh = self.conn is None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
                response = self.conn.getresponse()
                data = response.read()
            except _RETRYABLE:
                self.close()
                if attempt or fresh:
                    raise
                self.reconnects += 1  # a kept-alive connection closed by the server: once more on a new one
                continue
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            return response.status, data, time.monotonic() - t0
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- idle ------------------------------------------------------------------------------------------
def run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    conn = Connection(spec["url"], {"Authorization": f"Bearer {spec['token']}"})
    latencies, errors = [], []
    path = f"/api/v1/orders/{spec['order_id']}"
    next_at = time.monotonic()
    try:
        for _ in range(spec["count"]):
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = time.monotonic() + spec["every"]
            try:
                status, _, seconds = conn.request("GET", path)
            except Exception as exc:
                errors.append(f"idle GET: {exc!r}")
                continue
            if status != 200:
                errors.append(f"idle GET: HTTP {status}")
                continue
            latencies.append(seconds)
    finally:
        conn.close()
    return {"latencies": latencies, "errors": errors, "reconnects": conn.reconnects}


# --- load ------------------------------------------------------------------------------------------
class Load:
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.lock = threading.Lock()
        self.orders: list[dict[str, Any]] = []  # one per order: kiosk, id, t_post, t_final, status, polls
        self.polls: list[tuple[float, float, str]] = []  # (start, seconds, kiosk) of every successful status GET
        self.panel: list[tuple[float, float, str, int]] = []  # (start, seconds, path, HTTP status)
        self.errors: list[str] = []
        self.counts = {"http_errors": 0, "failed_polls": 0, "failed_orders": 0, "panel_errors": 0}
        self.reconnects = 0
        self.kiosks_done = threading.Event()

    def error(self, kind: str, message: str) -> None:
        with self.lock:
            self.counts[kind] += 1
            if len(self.errors) < 200:
                self.errors.append(message)

    def kiosk(self, code: str, token: str, bodies: list[dict[str, Any]], offset: float = 0.0) -> None:
        spec = self.spec
        conn = Connection(spec["url"], {"Authorization": f"Bearer {token}"})
        try:
            time.sleep(max(0.0, spec["start_at"] + offset - time.monotonic()))
            for body in bodies:
                record = {"kiosk": code, "id": body["id"], "t_post": time.monotonic(), "t_final": None,
                          "status": None, "polls": 0}
                with self.lock:
                    self.orders.append(record)
                try:
                    status, data, _ = conn.request("POST", "/api/v1/orders", json.dumps(body).encode(),
                                                   {"Content-Type": "application/json"})
                except Exception as exc:
                    self.error("http_errors", f"{code}: POST {exc!r}")
                    continue
                if status != 201:
                    self.error("http_errors", f"{code}: POST HTTP {status} {data[:200]!r}")
                    continue
                state = json.loads(data)["status"]
                self._poll_until_final(code, conn, record, state)
        finally:
            conn.close()
            with self.lock:
                self.reconnects += conn.reconnects

    def _poll_until_final(self, code: str, conn: Connection, record: dict[str, Any], state: str) -> None:
        spec = self.spec
        path = f"/api/v1/orders/{record['id']}"
        next_at = time.monotonic() + spec["poll"]
        while state not in FINAL:
            if time.monotonic() - record["t_post"] > spec["order_timeout"]:
                self.error("failed_orders", f"{code}: order {record['id']} not final in {spec['order_timeout']} s")
                return
            time.sleep(max(0.0, next_at - time.monotonic()))
            start = time.monotonic()
            next_at = start + spec["poll"]
            try:
                status, data, seconds = conn.request("GET", path)
            except Exception as exc:
                self.error("failed_polls", f"{code}: GET {exc!r}")
                continue
            record["polls"] += 1
            if status != 200:
                self.error("failed_polls", f"{code}: GET HTTP {status} {data[:200]!r}")
                continue
            with self.lock:
                self.polls.append((start, seconds, code))
            state = json.loads(data)["status"]
        record["t_final"] = time.monotonic()
        record["status"] = state
        if state != "completed":
            self.error("failed_orders", f"{code}: order {record['id']} ended {state}")

    # --- the manager's venue page --------------------------------------------------------------------
    def manager(self) -> None:
        spec = self.spec
        cookie = "; ".join(f"{k}={v}" for k, v in spec["cookies"].items())
        pool: queue.Queue[Connection] = queue.Queue()
        made = [Connection(spec["url"], {"Cookie": cookie}) for _ in range(BROWSER_CONNECTIONS)]
        for conn in made:
            pool.put(conn)
        try:
            time.sleep(max(0.0, spec["start_at"] - time.monotonic()))
            page = self._panel_get(pool, "/", {})
            fragments = venue_fragments(page.decode(errors="replace")) if page else []
            with self.lock:
                self.fragments = fragments
            threads = [threading.Thread(target=self._fragment, args=(pool, path, every, load), daemon=True)
                       for path, every, load in fragments]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            for conn in made:
                conn.close()
                with self.lock:
                    self.reconnects += conn.reconnects

    def _fragment(self, pool: queue.Queue[Connection], path: str, every: float | None, load: bool) -> None:
        headers = {"HX-Request": "true", "HX-Current-URL": self.spec["url"] + "/"}
        if load:
            self._panel_get(pool, path, headers)
        if every is None:
            return
        # htmx's "every N": the element swapped in by the answer starts its own timer (outerHTML), so N after it.
        while not self.kiosks_done.wait(every):
            self._panel_get(pool, path, headers)

    def _panel_get(self, pool: queue.Queue[Connection], path: str, headers: dict[str, str]) -> bytes | None:
        conn = pool.get()
        start = time.monotonic()
        try:
            status, data, seconds = conn.request("GET", path, headers=headers)
        except Exception as exc:
            self.error("panel_errors", f"manager: GET {path}: {exc!r}")
            return None
        finally:
            pool.put(conn)
        with self.lock:
            self.panel.append((start, seconds, path, status))
        if status != 200:
            self.error("panel_errors", f"manager: GET {path}: HTTP {status}")
            return None
        return data

    def run(self) -> dict[str, Any]:
        spec = self.spec
        cpu0, wall0 = os.times(), time.monotonic()
        self.fragments: list[tuple[str, float | None, bool]] = []
        # Kiosk i's first order is placed i/N of a poll period after the start (spec "stagger"): 30 guests still pay
        # within a quarter of a second, but the kiosks do not poll in lockstep, 30 GETs in the same millisecond
        # every 250 ms for the whole run, which independent kiosks never do (their orders all last the same in
        # the bench, so a common start would keep them in phase to the end).
        count = len(spec["kiosks"])
        kiosks = [threading.Thread(target=self.kiosk, args=(k["code"], k["token"], k["bodies"],
                                                            spec.get("stagger", 0.0) * i / count), daemon=True)
                  for i, k in enumerate(spec["kiosks"])]
        # spec "manager" false: no venue page open (to see the manager's share of the kiosks' latency).
        managers = [threading.Thread(target=self.manager, daemon=True)] if spec.get("manager", True) else []
        for thread in [*kiosks, *managers]:
            thread.start()
        for thread in kiosks:
            thread.join()
        self.kiosks_done.set()
        for thread in managers:
            thread.join(timeout=60)
        cpu1, wall1 = os.times(), time.monotonic()
        return {
            "orders": self.orders, "polls": self.polls, "panel": self.panel, "fragments": self.fragments,
            "errors": self.errors, "counts": self.counts, "reconnects": self.reconnects,
            "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), "wall_s": wall1 - wall0,
        }


def venue_fragments(page: str) -> list[tuple[str, float | None, bool]]:
    """Every htmx fragment a page polls by itself: (path, every N seconds or None, fired on load)."""
    found = []
    for tag in _TAG.findall(page):
        attrs = dict(_ATTR.findall(tag))
        trigger = attrs.get("hx-trigger", "")
        every = _EVERY.search(trigger)
        seconds = None if every is None else float(every.group(1)) / (1000 if every.group(2) == "ms" else 1)
        load = "load" in [t.strip().split(" ")[0] for t in trigger.split(",")]
        if seconds is not None or load:
            found.append((html.unescape(attrs["hx-get"]), seconds, load))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    result = run_idle(spec) if spec["mode"] == "idle" else Load(spec).run()
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
