# Bad input (issue 6; tests/long/test_fuzz_short.py): the kiosk API fuzzed from its OpenAPI schema (schemathesis +
# hypothesis) with jobs queued but never run, the panel's POSTs with random forms and its GETs with random
# query parameters (issue 16). The tables are printed and appended to FUZZ_REPORT. On SQLite by default;
# `make fuzz DATABASE_URL=postgres://...` too.
FUZZ_REPORT ?= artifacts/fuzz-report.txt

.PHONY: fuzz fuzz-short

# ≥ 10,000 generated kiosk API requests + 2,000 panel POSTs + 2,000 panel GETs (≤ 20 min).
fuzz: venv
	@mkdir -p $(dir $(FUZZ_REPORT)) && rm -f $(FUZZ_REPORT)
	FUZZ_REQUESTS=10000 FUZZ_PANEL_REQUESTS=2000 FUZZ_PANEL_GET_REQUESTS=2000 FUZZ_REPORT="$(FUZZ_REPORT)" \
		$(BIN)/python -m pytest -p no:cacheprovider -p no:logging -s -q tests/long/test_fuzz_short.py
	@cat $(FUZZ_REPORT)

# What CI runs (about 1,000 requests).
fuzz-short: venv
	$(BIN)/python -m pytest -p no:cacheprovider -p no:logging -s -q tests/long/test_fuzz_short.py
