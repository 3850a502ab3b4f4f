"""The HTML misclassification report opened from disk in headless Chromium shows its thumbnails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM
from tests.factories import (
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from webapp.services.reporting import reports

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
def report_file(app_ctx, tmp_path) -> Path:
    """An HTML report of three wrong calls, written, then moved away from the instance folder."""
    dataset = make_dataset("main")
    version = make_version("v1", active=True)
    for seed, (label, p_fake) in enumerate([("real", 0.9), ("fake", 0.2), ("real", 0.7)]):
        image = make_seeded_image(dataset, label, "test", seed=seed)
        make_prediction(image, version, p_fake, ood_score=None, audit_key=0.0)
        if seed == 0:
            make_decision(image, "ann", "real", version, note="a photo of my cat")
    written = tmp_path / "written.html"
    reports.write_misclassified(written, "html")
    # Another machine: only the file travels, so nothing it shows may come from elsewhere.
    mailed = tmp_path / "mailed" / "report.html"
    mailed.parent.mkdir()
    shutil.move(written, mailed)
    return mailed


def test_report_opens_offline_with_its_thumbnails(report_file, browser):
    # The session's browser: a second sync_playwright() beside it refuses to start.
    context = browser.new_context()
    try:
        page = context.new_page()
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(report_file.as_uri())
        page.wait_for_load_state("load")
        images = page.locator("#rows img")
        assert images.count() == 3
        for index in range(3):
            image = images.nth(index)
            image.scroll_into_view_if_needed()
            image.evaluate("img => img.decode()")  # loading="lazy": wait until decoded
            assert image.evaluate("img => img.complete && img.naturalWidth") > 0
        assert "a photo of my cat" in page.locator("#rows").inner_text()
        assert page.locator("#metric-accuracy").inner_text() == "0.0%"
        assert all(url.startswith(("file:", "data:")) for url in requested), requested
    finally:
        context.close()
