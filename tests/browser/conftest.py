"""Browser tests: pytest-playwright driving Debian's Chromium (/usr/bin/chromium; never `playwright install`).

Playwright's sync API runs an event loop in the test's thread, so Django's async-safety check would
refuse the test body's ORM calls: DJANGO_ALLOW_ASYNC_UNSAFE is set for these tests only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.passes import postgres_pass

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)
            if not Path(CHROMIUM).exists():
                item.add_marker(pytest.mark.skip(reason=f"{CHROMIUM} missing: run `make system-deps`"))
            elif postgres_pass():
                item.add_marker(pytest.mark.skip(reason="the browser tests run in the SQLite pass (tests/passes.py)"))


# pytest-playwright keeps Playwright (and its event loop) for the whole session; these tests keep it
# for their module only, so the rest of the suite, run in the same process, never sees that loop.
@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # while Playwright's loop exists, and only then
        driver = sync_playwright().start()
        yield driver
        driver.stop()


@pytest.fixture(scope="module")
def browser(playwright, browser_type_launch_args):
    chromium = playwright.chromium.launch(**browser_type_launch_args)
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_FLAGS, "headless": True}


@pytest.fixture(scope="module")
def browser_context_args():
    return {"locale": "ru-RU", "timezone_id": "Europe/Moscow", "viewport": {"width": 1366, "height": 900}}


@pytest.fixture
def shot():
    """``shot(page, "03-shift-opened")`` saves artifacts/screenshots/03-shift-opened.png (full page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
