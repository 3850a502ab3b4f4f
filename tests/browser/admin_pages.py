"""Helpers for the admin pages' browser tests: log in as an admin, take a screenshot."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import PASSWORD, make_user


def log_in_admin(page, base_url: str, app, username: str = "root") -> None:
    """Log in through the form as an admin (created when missing); lands on the overview."""
    with app.app_context():
        make_user(username, role="admin")
    page.goto(f"{base_url}/auth/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def screenshot(page, name: str) -> None:
    """Save a full-page screenshot under ``REALFAKE_SCREENSHOTS`` when that is set (by hand,
    to look at the pages); nothing otherwise."""
    folder = os.environ.get("REALFAKE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


SEVERE = {"critical", "serious"}


def severe_violations(page) -> list[str]:
    """The critical and serious axe-core violations of the page (axe-core is bundled by
    axe-playwright-python and injected by the test: no CDN), one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + "; ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
        for violation in results.response["violations"]
        if violation["impact"] in SEVERE
    ]
