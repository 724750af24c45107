"""The kiosk JSON API, version 1 (issue 4): ``POST /api/v1/orders``, ``GET /api/v1/orders/<id>``.

Modules: ``app`` (the NinjaAPI, error handlers, OpenAPI), ``views`` (endpoints), ``auth`` (kiosk
bearer tokens), ``body`` (reading JSON), ``idempotency``, ``schemas`` (the one definition of the
bodies), ``validation`` (field errors in Russian), ``orders`` (saving), ``status``
(``order_status_json``), ``errors`` (the error body and codes), ``urls``.
"""
