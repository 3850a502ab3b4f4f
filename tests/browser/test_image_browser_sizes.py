"""The image browser's size filters in Chromium: the long side in pixels (``px_min`` /
``px_max``) with the file-size bounds beside it, each tile saying its dimensions, and keyset
pages that keep the filters."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.admin_pages import log_in_admin, screenshot, severe_violations
from tests.browser.conftest import CHROMIUM
from tests.factories import make_dataset, make_prediction, make_version
from tests.factories import make_seeded_image as make_image
from webapp.extensions import db
from webapp.services.admin import image_browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]

SIZES = [(640, 480), (480, 1600), (2048, 1536), (200, 150), (300, 300), (1024, 4000)]


@pytest.fixture
def sized(app, monkeypatch):
    """Sixty images of six sizes, scored by the active version; pages of four."""
    monkeypatch.setattr(image_browser, "PAGE_SIZE", 4)
    with app.app_context():
        dataset, version = make_dataset("photos"), make_version("v1", active=True)
        for seed in range(60):
            image = make_image(dataset, "real" if seed % 2 else "fake", "test", seed=seed)
            image.width, image.height = SIZES[seed % len(SIZES)]
            make_prediction(image, version, 0.3, ood_score=None, audit_key=0.0)
        db.session.commit()


def test_the_long_side_filter_narrows_the_grid_and_pages_keep_it(app, server, new_page, sized):
    page = new_page()
    log_in_admin(page, server, app)
    page.goto(f"{server}/admin/images/")
    page.fill("input[name=px_min]", "1000")
    page.fill("input[name=px_max]", "2048")
    page.click("button:has-text('Show')")
    page.wait_for_url(re.compile(r"px_min=1000"))
    expect(page.locator(".image-grid li")).to_have_count(4)
    shown = set()
    while True:
        for text in page.locator(".image-grid .dims").all_inner_texts():
            width, height = map(int, text.split(" · ")[0].split("×"))
            assert 1000 <= max(width, height) <= 2048, text
            shown.add(text)
        more = page.locator("a:has-text('Next page')")
        if more.count() == 0:
            break
        more.click()
        page.wait_for_load_state()
        assert "px_min=1000" in page.url and "px_max=2048" in page.url
    assert {text.split(" · ")[0] for text in shown} == {"480×1600", "2048×1536"}
    assert page.input_value("input[name=px_min]") == "1000"
    assert severe_violations(page) == []
    screenshot(page, "image-browser-long-side")


def test_the_long_side_filter_excludes_what_the_file_size_would_keep(app, server, new_page, sized):
    page = new_page()
    log_in_admin(page, server, app)
    page.goto(f"{server}/admin/images/?kb_min=0&px_max=300")
    expect(page.locator(".image-grid li")).to_have_count(4)
    dims = page.locator(".image-grid .dims").all_inner_texts()
    assert {text.split(" · ")[0] for text in dims} <= {"200×150", "300×300"}
    page.goto(f"{server}/admin/images/?px_min=5000")
    assert "No image matches these filters." in page.inner_text("main")
