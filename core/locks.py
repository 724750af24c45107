"""One operation at a time per device, across every process and machine sharing the database.

A lock is a row (``DeviceLock``) claimed by a compare-and-set UPDATE: it works the same on SQLite
and PostgreSQL and needs no long transaction around a device call that may last minutes. The claim
is a lease: a holder that died (kill -9, power loss) loses it when the lease ends, or at once when
it is a process of this machine that no longer exists.

Locks are re-entrant within one thread, so a workflow may call another that takes the same lock.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from core.models import DeviceLock, Kiosk

_local = threading.local()
_HOST = socket.gethostname()


class DeviceBusy(Exception):
    """Another operation holds this device and did not finish within the wait."""

    def __init__(self, key: str, holder: str, purpose: str):
        super().__init__(f"Устройство занято другой операцией ({purpose or holder})")
        self.key = key
        self.holder = holder
        self.purpose = purpose


def holder_id() -> str:
    """``host:pid:thread:random``: unique per thread, and tells whether the holder still lives."""
    if not hasattr(_local, "holder"):
        _local.holder = f"{_HOST}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
    holder: str = _local.holder
    return holder


def _held() -> dict[str, int]:
    """Keys this thread holds, with how many times it entered each (0: claimed along with another key by
    ``device_lock(with_keys=...)`` and not entered yet)."""
    if not hasattr(_local, "held"):
        _local.held = {}
    held: dict[str, int] = _local.held
    return held


def _later() -> set[str]:
    """Keys this thread has left (``device_lock(release_later=True)``) whose rows are freed with its next lock
    statement: a claim, or the release of the lock still held around them."""
    if not hasattr(_local, "later"):
        _local.later = set()
    later: set[str] = _local.later
    return later


def _free_rows(keys: list[str]) -> None:
    DeviceLock.objects.filter(key__in=keys, holder=holder_id()).update(holder="", purpose="", expires_at=None)


def _flush_later() -> None:
    later = _later()
    if later:
        keys = sorted(later)
        later.clear()
        _free_rows(keys)


def _holder_is_dead(holder: str) -> bool:
    """True when the holder was a process on this machine that no longer exists."""
    parts = holder.split(":")
    if len(parts) < 2 or parts[0] != _HOST:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        # Same process, another thread that forgot us? Only a stale entry from a thread that ended.
        return parts[2] not in {str(t.ident) for t in threading.enumerate()} if len(parts) > 2 else False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process that nobody reaped yet still answers kill(pid, 0): it is dead all the same."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def _create_held(key: str, values: dict[str, Any]) -> bool:
    """First use of ``key``: its row is created already held by us (False if another process made it first)."""
    try:
        with transaction.atomic():
            DeviceLock.objects.create(key=key, **values)
    except IntegrityError:
        return False
    return True


def _insert_held(key: str, values: dict[str, Any]) -> bool:
    """``_create_held`` in one statement when no transaction is open (a failed INSERT in autocommit leaves
    nothing behind to roll back); inside one, through its savepoint."""
    if transaction.get_connection().in_atomic_block:
        return _create_held(key, values)
    try:
        DeviceLock.objects.create(key=key, **values)
    except IntegrityError:
        return False
    return True


def try_acquire(key: str, purpose: str = "", lease: float | None = None, *, new_key: bool = False) -> bool:
    """Claim ``key`` once, without waiting. Re-entrant for the thread that holds it.

    ``new_key``: a key that is usually used for the first time (one per order): its row is inserted held at
    once, and only if it exists already is it claimed as usual (one round trip instead of five)."""
    held = _held()
    if key in held:
        held[key] += 1
        return True
    later = _later()
    if key in later:  # left a moment ago and its row not freed yet: still ours
        later.discard(key)
        held[key] = 1
        return True
    _flush_later()  # before waiting for anything, free what this thread has left
    now = timezone.now()
    me = holder_id()
    values = {"holder": me, "purpose": purpose[:255], "acquired_at": now,
              "expires_at": now + timedelta(seconds=lease or settings.DEVICE_LOCK_LEASE)}
    if new_key and _insert_held(key, values):
        held[key] = 1
        _local.inserted = key
        return True
    # The usual case is one UPDATE (one commit): the row exists and is free. Only when that fails do we
    # look at the row: missing (created held), or held by a process that died.
    free = DeviceLock.objects.filter(Q(holder="") | Q(expires_at__lt=now), key=key)
    claimed = free.update(**values)
    if not claimed:
        current = DeviceLock.objects.filter(key=key).values_list("holder", flat=True).first()
        if current is None:
            if _create_held(key, values):
                _local.inserted = key
                claimed = 1
            else:
                claimed = free.update(**values)  # lost the race: the winner's row
        elif current and _holder_is_dead(current):
            claimed = DeviceLock.objects.filter(key=key, holder=current).update(**values)
    if claimed:
        held[key] = 1
        return True
    return False


def release(key: str, *, later: bool = False) -> None:
    """Leave ``key``; its row is freed when the thread leaves it as often as it entered it. ``later``: while this
    thread still holds another key, the row is freed with the thread's next lock statement instead (one round
    trip for both), which comes at once: the release of that other key, or the next claim (before any wait).
    Keys claimed along with this one and never entered are freed with it."""
    held = _held()
    if key not in held:
        return
    held[key] -= 1
    if held[key] > 0:
        if not later:
            _flush_later()
        return
    del held[key]
    unused = [k for k, count in held.items() if count == 0]
    if later and any(count > 0 for count in held.values()):
        _later().add(key)
        return
    for k in unused:
        del held[k]
    pending = _later()
    keys = sorted({key, *unused, *pending})
    pending.clear()
    _free_rows(keys)


def _claim_together(keys: dict[str, str], lease: float | None) -> bool:
    """Claim every key of ``keys`` (key -> purpose) in one statement, or none: True when all were free."""
    _flush_later()
    now = timezone.now()
    purpose = Case(*(When(key=k, then=Value(p[:255])) for k, p in keys.items()), default=Value(""))
    free = DeviceLock.objects.filter(Q(holder="") | Q(expires_at__lt=now), key__in=list(keys))
    claimed = free.update(holder=holder_id(), purpose=purpose, acquired_at=now,
                          expires_at=now + timedelta(seconds=lease or settings.DEVICE_LOCK_LEASE))
    if claimed == len(keys):
        return True
    if claimed:  # some were taken (or have no row yet): ours back, and the usual way
        _free_rows(list(keys))
    return False


def prune_free_locks(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete lock rows nobody holds and nobody took for a day: per-order and per-refund keys would
    otherwise add a row per order forever. A deleted row is simply created again on its next use (the
    DELETE only matches a free row, so it never races a claim)."""
    deleted, _ = DeviceLock.objects.filter(holder="", acquired_at__lt=timezone.now() - older_than).delete()
    return deleted


@contextmanager
def device_lock(
    key: str, purpose: str = "", wait: float = 0.0, poll: float = 0.2, *, new_key: bool = False,
    with_keys: dict[str, str] | None = None, release_later: bool = False,
) -> Iterator[bool]:
    """Hold ``key`` for the block; wait up to ``wait`` seconds for it, else raise DeviceBusy (``new_key``: see
    ``try_acquire``). Yields True when this claim made the key's row: nobody ever held it before (a per-order key).

    ``with_keys`` (key -> purpose): locks the block will most likely take next, claimed with ``key`` in one
    statement when all are free (else ``key`` alone, as usual); a ``device_lock`` of one of them inside the block
    then costs no round trip, and one never entered is freed with ``key``. ``release_later``: see ``release``."""
    deadline = time.monotonic() + wait
    held = _held()
    _local.inserted = None
    if with_keys and key not in held and not set(with_keys) & set(held) and _claim_together(
            {key: purpose, **with_keys}, None):
        held[key] = 0
        held.update(dict.fromkeys(with_keys, 0))
    while not try_acquire(key, purpose, new_key=new_key):
        if time.monotonic() >= deadline:
            row = (DeviceLock.objects.filter(key=key).values("holder", "purpose").first()
                   or {"holder": "", "purpose": ""})
            raise DeviceBusy(key, row.get("holder", ""), row.get("purpose", ""))
        time.sleep(poll)
    first = getattr(_local, "inserted", None) == key
    _local.inserted = None
    try:
        yield first
    finally:
        release(key, later=release_later)


def holds(key: str) -> bool:
    return key in _held()


def sale_lock_key(kiosk: Kiosk) -> str:
    """Held by a kiosk's checkout from its receipt to the end of its payment (or annulment), and by a
    shift close: a close waits for, or refuses during, a payment in progress; it never interrupts it."""
    return f"sale:{kiosk.code}"
