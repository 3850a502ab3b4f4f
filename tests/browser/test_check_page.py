"""A reviewer drops a photograph on the Check page and reads the verdict and every evidence row."""

from __future__ import annotations

import base64

import pytest

from tests import evidence_factories as make
from tests.factories import make_active_version
from tests.helpers import PASSWORD, make_user

pytestmark = pytest.mark.browser

ROWS = {
    "model": "The model",
    "similar": "Near duplicates",
    "credentials": "Content Credentials (C2PA)",
    "metadata": "Metadata",
    "watermark": "Invisible watermark",
    "phash": "Perceptual hash",
}
DROP = """([name, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
  return transfer;
}"""


def test_dropping_a_photo_shows_its_verdict_and_evidence(app, server, new_page, worker):
    app.config["CHECK_WAIT_SECONDS"] = 120  # the worker's first check loads the network
    with app.app_context():
        make_active_version()
        make_user("rita")
    page = new_page()
    page.goto(f"{server}/auth/login")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{server}/check/")
    photo = base64.b64encode(make.camera_jpeg(make.photo("coffee", 320))).decode()
    transfer = page.evaluate_handle(DROP, ["coffee.jpg", photo])
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    card = page.wait_for_selector('.check-card[data-state="done"]', timeout=120_000)
    verdict = card.query_selector(".verdict").inner_text()
    assert verdict in ("REAL", "FAKE", "UNCERTAIN")
    rows = {
        row.get_attribute("data-kind"): row.inner_text()
        for row in card.query_selector_all("tr.evidence-row")
    }
    assert set(rows) == set(ROWS)
    for kind, title in ROWS.items():
        assert rows[kind].startswith(title), rows[kind]
    assert "FUJIFILM X-T5" in rows["metadata"]
    assert "No Content Credentials" in rows["credentials"]
    assert "v1: calibrated p(fake)" in rows["model"]
    page.click(".check-card h2 a")  # the check's own page says the same
    page.wait_for_selector(".check-result")
    assert page.inner_text("#verdict") == verdict
    kinds = [row.get_attribute("data-kind") for row in page.query_selector_all("tr.evidence-row")]
    assert set(kinds) == set(ROWS)
