"""`make run`: migrate, seed the demo venue, then run the emulators, both q2 clusters and the web
server until Ctrl-C / SIGTERM, which stops everything started here and leaves no port bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MANAGE = [PY, str(ROOT / "manage.py")]
# `manage.py simulate` goes to the same address by default (nekassir/simulation.py served_url reads PORT too).
HOST, PORT = "127.0.0.1", os.environ.get("PORT", "").strip() or "8000"
# Marked goods: the check service is the emulator `manage.py emulators` starts, with its demo key
# (marking/emulator.py DEMO_TOKEN; tests/marking/test_marking_emulator.py keeps the two the same).
MARKING_EMULATOR_TOKEN = "00000000-demo-0000-mark-000000000000"  # noqa: S105 - the emulator's public demo key


def manage(*args: str) -> str:
    done = subprocess.run([*MANAGE, *args], check=True, cwd=ROOT, capture_output=True, text=True)  # noqa: S603
    if args[0] == "demo" and done.stderr:  # the demo's notes (a kiosk's address left as it was), passed on
        print(done.stderr, end="", file=sys.stderr, flush=True)
    return done.stdout


def main() -> int:
    if not PORT.isdigit() or not 1 <= int(PORT) <= 65535:
        print(f"PORT={PORT!r}: нужен номер порта от 1 до 65535", file=sys.stderr)
        return 2
    # Set before any child starts, so the web server, the clusters and the demo all see it (unless set already).
    emulator_host = os.environ.get("EMULATOR_HOST", "127.0.0.1")
    marking_port = os.environ.get("MARKING_EMULATOR_PORT", "8766")
    os.environ.setdefault("MARKING_CHECK_URL", f"http://{emulator_host}:{marking_port}")
    os.environ.setdefault("MARKING_CHECK_TOKEN", MARKING_EMULATOR_TOKEN)
    manage("migrate", "--noinput")
    manage("collectstatic", "--noinput")
    demo = json.loads(manage("demo", "--json"))
    children = {
        "emulators": [*MANAGE, "emulators"],
        "q2 default": [*MANAGE, "qcluster"],
        "q2 devices": [*MANAGE, "devicecluster"],
        "web": [*MANAGE, "runserver", f"{HOST}:{PORT}", "--noreload"],
    }
    # Each child in its own session: a Ctrl-C or SIGTERM reaches only us, and we pass it on exactly
    # once (a q2 cluster that gets a second SIGTERM while stopping hangs until killed).
    procs = {
        name: subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)  # noqa: S603
        for name, cmd in children.items()
    }
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    manager = demo["manager"]
    print(f"\nНекассир работает: http://{HOST}:{PORT}/", flush=True)
    if manager["password"] is None:  # the demo does not change a password set by hand
        print(f"Вход: {manager['username']} / пароль задан вручную (новый пароль демо: manage.py demo --reset)",
              flush=True)
    else:
        print(f"Вход: {manager['username']} / {manager['password']}", flush=True)
    for kiosk in demo["kiosks"]:
        if kiosk.get("token"):
            print(f"Токен киоска {kiosk['code']}: {kiosk['token']}", flush=True)
    print("Ctrl-C — остановить всё.\n", flush=True)
    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} завершился с кодом {proc.returncode}; останавливаю остальное", file=sys.stderr)
                stopping, exit_code = True, 1
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
