"""The product's memory as one figure: the sum of PSS over every process of the stack (issue 15 item 2).

PSS (``Pss:`` of ``/proc/<pid>/smaps_rollup``) counts a page shared by N processes as 1/N in each, so the sum
over the gunicorn master and workers, the default cluster's processes and the device cluster's processes is
the memory the product really takes (forked workers share most of theirs). PostgreSQL, Redis and the
benchmark's own processes are not in it: ``Stack.memory()`` reads the sessions of the stack's own children.
"""

from __future__ import annotations

import math
from typing import Any


def product_pss_mib(memory: dict[str, dict[str, Any]]) -> float:
    """Sum of PSS over every part of ``Stack.memory()`` (web, devices, default); NaN if nothing was read."""
    parts = [part["pss_sum_mib"] for part in memory.values() if "pss_sum_mib" in part]
    return sum(parts) if parts else math.nan


def product_processes(memory: dict[str, dict[str, Any]]) -> int:
    return sum(part.get("processes", 0) for part in memory.values())
