# Fault-injection soak (issue 6; scripts/soak.py). Its own temporary data folder and database (a throwaway
# PostgreSQL database when one answers at SOAK_PG_URL, else a SQLite file): never make run's var/.
# SOAK_ARGS passes options through, e.g. `make soak SOAK_ARGS="--db sqlite --seed 7"`.
SOAK_PG_URL ?= $(PG_TEST_URL)
SOAK_ARGS ?=

.PHONY: soak soak-short

# ≥ 1,000 orders on 5 kiosks (about 10 % with marked goods, issue 13), ≥ 20 SIGKILLs of the device cluster,
# faults from every emulator, the marking ones included (≤ 25 min).
soak: venv
	SOAK_PG_URL="$(SOAK_PG_URL)" $(BIN)/python -m scripts.soak $(SOAK_ARGS)

# The CI version (≤ 5 min): 100 orders, 3 kills; tests/long/test_soak_short.py runs the same.
soak-short: venv
	SOAK_PG_URL="$(SOAK_PG_URL)" $(BIN)/python -m scripts.soak --short $(SOAK_ARGS)
