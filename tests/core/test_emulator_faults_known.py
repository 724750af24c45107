"""Every emulator lists the faults it knows (issue 11.11): ``GET /_emulator/faults/known`` answers
``{"<fault name>": "<what it does>"}``, ``GET /_emulator/faults`` keeps answering the armed ones, and the
README's emulator section names every fault, so an integrator reading it can reproduce any failure."""

from __future__ import annotations

from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

# Faults the issue asks for by name: they must exist where the issue puts them.
REQUIRED = {
    "atol_emulator": {"shift_expires_before_next_sell"},
    "kkm_emulator": {"busy", "no_connection", "reversal_refused"},
    "dc_emulator": {"busy", "no_connection", "reversal_refused"},
    "iiko_emulator": {"lost_create_answer", "invisible_for"},
}


@pytest.mark.parametrize("fixture", sorted(REQUIRED))
def test_every_emulator_lists_its_faults_with_what_they_do(request, fixture):
    emulator = request.getfixturevalue(fixture)
    answer = emulator.control.get("/_emulator/faults/known")
    assert answer.status_code == 200
    known = answer.json()
    assert isinstance(known, dict) and known
    assert all(isinstance(name, str) and isinstance(text, str) and len(text) > 10 for name, text in known.items())
    assert REQUIRED[fixture] <= set(known), REQUIRED[fixture] - set(known)
    assert set(known) == set(emulator.app.faults_known)  # the list is what the emulator really accepts


@pytest.mark.parametrize("fixture", sorted(REQUIRED))
def test_armed_faults_are_still_listed_apart(request, fixture):
    emulator = request.getfixturevalue(fixture)
    name = sorted(REQUIRED[fixture])[0]
    emulator.fault(name, count=2, device="1")
    armed = emulator.control.get("/_emulator/faults").json()
    assert [(f["fault"], f["count"]) for f in armed] == [(name, 2)]
    assert emulator.control.post("/_emulator/faults", json={"fault": "no_such_fault"}).status_code == 400


@pytest.mark.parametrize("fixture", sorted(REQUIRED))
def test_the_readme_names_every_fault(request, fixture):
    known = request.getfixturevalue(fixture).app.faults_known
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## Emulators"):]
    missing = [name for name in known if f"`{name}`" not in section]
    assert not missing, f"README's emulator section does not name {missing}"
