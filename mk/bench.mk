# Benchmarks and the production-like test (issue 7). See docs/BENCHMARKS.md and docs/PRODUCTION.md.
# They need PostgreSQL and Redis (BENCH_PG_URL, BENCH_REDIS_URL); the panel's data at scale is generated
# once into the databases nekassir_bench, nekassir_bench_10k (and nekassir_bench_100k for bench-quick)
# and kept; `make bench-clean` drops them.
BENCH_PG_URL ?= $(PG_TEST_URL)
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
BENCH_ENV = BENCH_PG_URL="$(BENCH_PG_URL)" BENCH_REDIS_URL="$(BENCH_REDIS_URL)"

.PHONY: bench bench-quick bench-checkout bench-kiosks30 bench-panel bench-clean test-production

# Everything (≤ 60 min on 2 cores; the first run also generates 1,000,000 orders): writes docs/BENCHMARKS.md.
bench: venv
	$(BENCH_ENV) $(BIN)/python -m scripts.bench

# A smoke check of a few minutes: smaller N (100,000 orders for the panel); does not touch the docs.
bench-quick: venv
	$(BENCH_ENV) $(BIN)/python -m scripts.bench --quick

# The checkout part and the 30-kiosk part (memory_pss_30_vs_10 compares their stacks).
bench-checkout: venv
	$(BENCH_ENV) $(BIN)/python -m scripts.bench --only checkout kiosks30

# 30 kiosks × 10 orders with a slow guest, status polling, a manager's venue page, memory (~6 min).
bench-kiosks30: venv
	$(BENCH_ENV) $(BIN)/python -m scripts.bench --only kiosks30

bench-panel: venv
	$(BENCH_ENV) $(BIN)/python -m scripts.bench --only panel

bench-clean: venv
	$(BENCH_ENV) $(BIN)/python -c "from scripts.bench.common import PG_URL, drop_database as d; \
	[d(PG_URL, n) for n in ('nekassir_bench', 'nekassir_bench_10k', 'nekassir_bench_100k', 'nekassir_bench_checkout', \
	 'nekassir_bench_kiosks30')]"
	rm -rf var/bench

# The production-like end-to-end test alone (PostgreSQL, Redis, gunicorn, two device clusters).
test-production: venv
	DATABASE_URL="$(PG_TEST_URL)" $(BIN)/python -m pytest -p no:cacheprovider tests/long/test_production.py
