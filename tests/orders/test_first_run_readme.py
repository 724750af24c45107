"""Issue 14, «Why»: «`PORT` is not documented». README's configuration table names ``PORT`` and every emulator's
port variable with the defaults the code really uses (scripts/run.py and nekassir/simulation.py for ``PORT``,
nekassir/settings.py for the emulators), and the first steps show a second terminal given the same ``PORT``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EMULATOR_PORTS = ("ATOL_EMULATOR_PORT", "KKM_EMULATOR_PORT", "DC_EMULATOR_PORT", "IIKO_EMULATOR_PORT",
                  "MARKING_EMULATOR_PORT")


def table_row(name: str) -> list[str]:
    """The cells of README's configuration row that starts with ``name``."""
    for line in README.splitlines():
        if line.startswith(f"| `{name}`"):
            return [cell.strip() for cell in line.strip().strip("|").split("|")]
    raise AssertionError(f"README's configuration table has no row for {name}")


def test_readme_documents_port_with_the_default_make_run_and_simulate_use():
    served = re.search(r'os\.environ\.get\("PORT", ""\)\.strip\(\) or "(\d+)"', (ROOT / "scripts/run.py").read_text())
    simulated = re.search(r"SERVED_HOST, SERVED_PORT = \"127\.0\.0\.1\", (\d+)",
                          (ROOT / "nekassir/simulation.py").read_text())
    assert served and simulated and served.group(1) == simulated.group(1)
    _, default, meaning = table_row("PORT")
    assert default == served.group(1)
    assert "make run" in meaning and "simulate" in meaning
    # The first steps: another port for make run, and the same PORT for simulate in a second terminal.
    assert "`PORT=8400 make run`" in README and "PORT=8400 .venv/bin/python manage.py" in README


def test_readme_documents_the_emulator_ports_with_their_real_defaults():
    settings_py = (ROOT / "nekassir/settings.py").read_text(encoding="utf-8")
    defaults = []
    for name in EMULATOR_PORTS:
        found = re.search(rf'env_int\("{name}", (\d+)', settings_py)
        assert found, name
        defaults.append(found.group(1))
    names, shown, _ = table_row(EMULATOR_PORTS[0])
    assert re.findall(r"`(\w+)`", names) == list(EMULATOR_PORTS)
    assert [d.strip() for d in shown.split(",")] == defaults
