"""The suite, one folder per room of the house (issue 12), with a conftest.py per level.

- ``core/``      the bottom app: addresses, the kiosk admin's secrets, API tokens, deployment settings, the
                 emulators' fault lists
- ``fiscal/``    ATOL: client, emulator, shifts, crashes mid-document, requisites, VAT, correction receipts
                 (its conftest.py: one ATOL emulator per module, a register per test, a tiny ATOL client)
- ``payments/``  the card terminals: KKM Server and DualConnector clients, terminal workflows, unknown outcomes
- ``iiko/``      the iiko Cloud client, schema validation, no twin orders
- ``orders/``    the top floor's workflows: checkout (crashes, expiry, the guest's window), refunds, recovery,
                 pickup numbers, receipt names, card resolution, alerts, the automatic close, support commands
- ``panel/``     the service menu: access, rights, pages, jobs, the embed's PIN, numeric parameters, security
- ``api/``       the kiosk API and its OpenAPI document
- ``browser/``   Playwright on Chromium (marker ``browser``, ``make test-browser``)
- ``long/``      the long runs: short soak, short fuzz, PostgreSQL concurrency, the production-like run

``conftest.py`` here holds what every room's tests use: the emulators on free ports, a venue on them, panel
accounts. The modules beside it are libraries, not tests: ``factories`` (kiosks, the kiosk admin's form),
``fake_servers`` (misbehaving HTTP servers), ``panel_support`` (accounts, orders placed or written straight to
the database, the «Проверить связь» button), ``processes`` (manage.py as a real process), ``threads``,
``urlwalk`` (every URL of the project) and ``venue`` (kiosks on the emulators, order bodies).
"""
