"""Benchmarks of Nekassir (``make bench``, ``make bench-quick``); see docs/BENCHMARKS.md.

Run from the repository root: ``python -m scripts.bench [--quick] [--only PART ...]``. Each part runs
in its own process (Django is configured once per process, and each part has its own database):

* ``checkout``  — the card checkout with device delays at zero, ours vs. the floor (the project's wire
  clients called directly in the same sequence), then 10 kiosks in parallel with realistic delays,
  and the peak memory of the web server and the q2 clusters after it;
* ``kiosks30``  — 30 kiosks × 10 orders with realistic delays and a slow guest, each polling its order's status,
  a manager's venue page open: wall time ÷ one kiosk's serial time, status GET p95 under load ÷ idle, and the
  sum of PSS over the product's processes (scripts/bench/kiosks30.py, kiosk_clients.py, memory.py);
* ``panel``     — the service pages on PostgreSQL at 1,000,000 orders (data generated once and kept).
"""
