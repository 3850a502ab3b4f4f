"""Issue 15, problem 4 and the new pages, in Chromium: Users, Audit, the image browser and its
record; Escalations in the navigation, the HTML report in the tab, API docs without backticks,
the favicon, the Overview's decision count, verdict changes with thumbnails. axe-core finds no
critical or serious violation on the new pages."""

from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.admin_pages import log_in_admin, screenshot, severe_violations
from tests.browser.conftest import CHROMIUM
from tests.factories import (
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from tests.helpers import PASSWORD
from webapp.extensions import db
from webapp.models import Dataset, ReviewRequest, User
from webapp.services.review import queue

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
def desk(app):
    """Two versions scoring twelve images of two datasets, with decisions and an undo."""
    with app.app_context():
        first, second = make_dataset("first"), make_dataset("second")
        v1, v2 = make_version("v1", active=True), make_version("v2", active=False)
        images = []
        for seed in range(12):
            image = make_seeded_image(
                first if seed < 8 else second, "real" if seed % 2 else "fake", "test", seed=seed
            )
            make_prediction(image, v1, (seed + 0.5) / 12, ood_score=seed / 10, audit_key=0.0)
            make_prediction(image, v2, 1 - (seed + 0.5) / 12, ood_score=None, audit_key=0.0)
            images.append(image.id)
        decided = db.session.get(type(image), images[0])
        decision = make_decision(decided, "ann", "real", v1, note="a cat")
        make_decision(decided, "ann", "undo", v1, reverts=decision)
        make_decision(db.session.get(type(image), images[1]), "ann", "real", v1)
        make_decision(db.session.get(type(image), images[2]), "bob", "skip", v1)
        return images


def test_users_page_adds_disables_resets_and_keeps_the_last_admin(app, server, new_page):
    page = new_page()
    log_in_admin(page, server, app)
    page.goto(f"{server}/admin/users")
    assert severe_violations(page) == []
    page.fill("#new-user input[name=username]", "rev")
    page.fill("#new-user input[name=password]", "short")
    page.fill("#new-user input[name=password]", PASSWORD)
    page.click("#new-user button")
    assert "Account rev (reviewer) made" in page.inner_text(".flashes")
    row = page.locator("tr[data-user=rev]")
    row.locator("button:has-text('Disable')").click()
    assert "rev is disabled" in page.inner_text(".flashes")
    page.locator("tr[data-user=root] button:has-text('Make reviewer')").click()
    assert "last admin who can log in" in page.inner_text(".flashes")
    page.locator("tr[data-user=root] button:has-text('Disable')").click()
    assert "last admin who can log in" in page.inner_text(".flashes")
    row = page.locator("tr[data-user=rev]")
    row.locator("button:has-text('Enable')").click()
    row = page.locator("tr[data-user=rev]")
    row.locator("input[name=password]").fill("a new password")
    row.locator("button:has-text('Reset password')").click()
    assert "rev's password was reset" in page.inner_text(".flashes")
    screenshot(page, "users")
    with app.app_context():
        rev = db.session.scalar(select(User).where(User.username == "rev"))
        assert rev.is_enabled and rev.check_password("a new password") and rev.role == "reviewer"
    page.goto(f"{server}/admin/audit?user=root")
    actions = page.locator("#audit tbody td:nth-child(3)").all_inner_texts()
    assert actions == ["password-reset", "user-enabled", "user-disabled", "user-created"]


def test_audit_page_filters_and_exports(app, server, new_page, desk):
    page = new_page()
    log_in_admin(page, server, app)
    page.goto(f"{server}/admin/audit")
    assert severe_violations(page) == []
    text = page.inner_text("#audit")
    assert "called it real (label before: fake); note: a cat" in text and "undid" in text
    page.select_option("#audit-filters select[name=action]", "undo")
    page.click("#audit-filters button")
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    page.select_option("#audit-filters select[name=action]", "")
    page.select_option("#audit-filters select[name=user]", "bob")
    page.click("#audit-filters button")
    expect(page.locator("#audit tbody tr")).to_have_count(1)  # bob's skip
    screenshot(page, "audit")
    with page.expect_download() as download:
        page.click("a:has-text('Export CSV')")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [(row["user"], row["action"]) for row in rows] == [("bob", "decision")]


def test_overview_counts_the_decisions_reviewers_see(app, server, new_page, desk):
    page = new_page()
    log_in_admin(page, server, app)
    kpis = page.locator(".panel:has-text('Review decisions') .kpi").inner_text()
    assert kpis == "1"  # 4 rows: one undone, its undo, a skip; one decision stands


def test_image_browser_filters_opens_and_sends_to_review(app, server, new_page, desk):
    page = new_page()
    log_in_admin(page, server, app)
    page.click("nav a:has-text('Images')")
    expect(page.locator(".image-grid li")).to_have_count(12)
    assert severe_violations(page) == []
    page.select_option(".filters select[name=dataset]", "second")
    page.select_option(".filters select[name=sort]", "-p_fake")
    page.click(".filters button")
    expect(page.locator(".image-grid li")).to_have_count(4)
    verdicts = page.locator(".image-grid .verdict").all_inner_texts()
    assert verdicts == sorted(verdicts, key=lambda v: -float(v.split()[1]))
    screenshot(page, "image-browser")
    boxes = page.locator(".image-grid input[type=checkbox]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("button:has-text('Send the selected images to the review queue')")
    assert "2 images sent to the review queue" in page.inner_text(".flashes")
    with app.app_context():
        assert len(db.session.scalars(select(ReviewRequest)).all()) == 2
        assert [item.bucket for item in queue.list_items(limit=2)] == ["requested"] * 2
    page.locator(".image-grid a").first.click()
    page.wait_for_load_state()
    body = page.inner_text("body")
    assert "Predictions of every version" in body and "v1" in body and "v2" in body
    assert severe_violations(page) == []
    screenshot(page, "image-record")
    page.goto(f"{server}/admin/images/{desk[0]}")
    assert page.locator("tr.undone").count() == 1 and "a cat" in page.inner_text("tr.undone")


def test_image_browser_selection_becomes_an_evaluation_dataset(app, server, new_page, desk):
    page = new_page()
    log_in_admin(page, server, app)
    page.goto(f"{server}/admin/images/?label=real")
    page.locator(".image-grid input[type=checkbox]").nth(0).check()
    page.fill("input[name=new_dataset]", "hand-picked")
    page.click("button:has-text('Create it')")
    assert "Evaluation-only dataset hand-picked created with 1 images" in page.inner_text(
        ".flashes"
    )
    with app.app_context():
        assert db.session.scalar(
            select(Dataset.evaluation_only).where(Dataset.name == "hand-picked")
        )


def test_verdict_changes_show_thumbnails_that_open_the_record(app, server, new_page, desk):
    page = new_page()
    log_in_admin(page, server, app)
    page.goto(f"{server}/admin/versions/v2/changes")
    thumbs = page.locator("#changes img.row-thumb")
    assert thumbs.count() == 12
    thumbs.first.evaluate("img => img.decode()")
    assert thumbs.first.evaluate("img => img.naturalWidth") > 0
    assert severe_violations(page) == []
    screenshot(page, "verdict-changes")
    page.locator("#changes td a").first.click()
    page.wait_for_load_state()
    assert "Predictions of every version" in page.inner_text("body")


def test_navigation_favicon_and_api_docs(app, server, new_page):
    page = new_page()
    log_in_admin(page, server, app)
    nav = page.locator("nav a").all_inner_texts()
    assert {"Images", "Escalations", "Users", "Audit"} <= set(nav)
    page.click("nav a:has-text('Escalations')")
    page.wait_for_load_state()
    assert page.url.endswith("/review/escalations")
    icon = page.request.get(f"{server}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    page.goto(f"{server}/api/v1/docs")
    assert "`" not in page.inner_text("main")
    assert page.locator(".api-docs code").count() > 3


def test_the_html_report_opens_in_the_browser_tab(app, server, new_page, desk, worker):
    page = new_page()
    log_in_admin(page, server, app)
    page.goto(f"{server}/reports/")
    page.locator("select[name=format]").first.select_option("html")
    page.click("button:has-text('Build report')")
    page.wait_for_selector("#report-jobs tr[data-job] a:has-text('Open')", timeout=60_000)
    with page.expect_navigation():
        page.click("#report-jobs tr[data-job] a:has-text('Open')")
    assert "/view" in page.url
    images = page.locator("img")
    assert images.count() > 0
    images.first.evaluate("img => img.decode()")
    assert images.first.evaluate("img => img.naturalWidth") > 0
    screenshot(page, "report-view")
