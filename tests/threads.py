"""Running test code in real threads, each with its own database connection (closed afterwards)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def run_in_threads(target: Callable[..., Any], args_list: list[tuple]) -> tuple[list[Any], list[BaseException]]:
    """Run ``target(*args)`` for each args tuple at once; returns (results, errors)."""
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(*args: Any) -> None:
        try:
            value = target(*args)
            with lock:
                results.append(value)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=args) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors
