"""Servers that answer badly on purpose, for testing how our clients take bad answers."""

from __future__ import annotations

from core.emulator_http import EmulatorApp, Response, json_response


class BadAtolServer(EmulatorApp):
    """Accepts every ATOL task POST, then answers every GET with the ``answer`` the test chose."""

    name = "bad-atol"

    def __init__(self, answer: Response):
        super().__init__()
        self.answer = answer

    def handle_protocol(self, request):
        if request.method == "POST":
            body = request.json()
            return json_response({"number": 1, "uuid": body["uuid"], "isBlocked": False, "blockedUUID": ""}, 201)
        return self.answer

    def journal(self):
        return []

    def reset(self):
        pass
