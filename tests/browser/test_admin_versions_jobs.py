"""Issue 15, problems 2 and 3, in Chromium on a real instance: a real training and a real
head-only refit run by the job worker; the job pages read as sentences with links and a bar that
ends full; the Jobs list says what each job is; the Versions page shows the refit's lineage and
no borrowed curves, compares on images neither version trained on and says so; activating asks
first and says how many verdicts change."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.browser.admin_pages import log_in_admin, screenshot, severe_violations
from tests.browser.conftest import CHROMIUM
from tests.factories import make_decision
from tests.services.training.test_training import write_separable_folder
from webapp.extensions import db
from webapp.jobs import submit, wait_for
from webapp.models import Image, Job, JobState, ModelVersion
from webapp.services.importing.importer import import_path
from webapp.services.records import versions

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
def trained(app, worker, tmp_path):
    """A tiny dataset, v1 trained, its training margins recorded and scored by the worker, and
    reviewer decisions on four of v1's training images (so a head refit trains on reviewed
    labels)."""
    with app.app_context():
        write_separable_folder(tmp_path / "src")
        import_path(tmp_path / "src", dataset="tiny", workers=1)
        params = {"epochs": 1, "image_size": 32, "oof_method": "margins", "oof_epochs": 1}
        job = wait_for(submit("train", params).id, timeout=300, poll=0.1)
        assert job.state == JobState.SUCCEEDED, job.error
        margins = db.session.scalar(select(Job).where(Job.kind == "oof"))
        assert wait_for(margins.id, timeout=300, poll=0.1).state == JobState.SUCCEEDED
        scoring = db.session.scalar(select(Job).where(Job.kind == "predict"))
        assert wait_for(scoring.id, timeout=300, poll=0.1).state == JobState.SUCCEEDED
        v1 = versions.get_version("v1")
        for image_id in versions.training_ids(v1)[:4].tolist():
            image = db.session.get(Image, image_id)
            make_decision(image, "ann", image.label, v1)
        return job.id


def test_a_head_refit_from_the_versions_page_to_its_activation(app, server, new_page, trained):
    page = new_page()
    log_in_admin(page, server, app)
    page.goto(f"{server}/admin/versions")
    page.click("button:has-text('Fast refresh')")
    page.wait_for_url(re.compile(r"/admin/jobs/\d+$"))
    page.wait_for_selector("#job-state:text('succeeded')", timeout=120_000)
    assert page.get_attribute("#job-progress", "value") == "1.0"
    result = page.inner_text("#job-result")
    assert "It registered version v2, fitted on" in result and "v2 is not active" in result
    assert page.locator("#job-error").count() == 0
    assert page.locator("#job-log-box[open]").count() == 0  # the log is collapsed
    assert page.locator("pre:text('version')").count() == 0  # no raw JSON dump
    links = page.locator(".job-links a").all_inner_texts()
    assert links == ["Version v2", "Compare versions", "Activate v2…"]
    assert severe_violations(page) == []
    screenshot(page, "job-head-refit")

    page.goto(f"{server}/admin/jobs")
    rows = page.inner_text(".jobs-table")
    assert "Head-only refit of v1" in rows and "Training v1 from random weights" in rows
    assert "Training margins of every labelled image, for v1's label mistakes" in rows
    assert "48 labelled images" in rows  # the margins job's size: every image of the tiny set
    assert "98%" not in rows and "epoch" not in rows.split("Training v1")[0]
    assert "Succeeded in" in rows
    screenshot(page, "jobs")

    page.goto(f"{server}/admin/versions")
    lineage = page.inner_text("#version-v2 .lineage")
    assert lineage.startswith("Head refit of v1")
    assert "with a reviewer's label" in page.inner_text("#version-v2 .trained-on")
    assert "v2 is a head refit" in page.inner_text(".head-curves")
    held_out = page.inner_text("#compare-reviewed")
    assert "4 reviewed images are left out because a compared version trained" in held_out
    assert "cannot be compared here" in held_out  # all four were v2's training images
    assert page.locator("#compare-reviewed table").count() == 0
    with app.app_context():
        assert versions.training_data(versions.get_version("v2"))["reviewed"] == 4
    # the test-split table (ten figures, the operating point, the confusion counts) fits its card
    test_split = page.locator("#compare-test .cm-mini").first.inner_text().split()
    assert test_split[0] == "R" and len(test_split) == 6
    fits = "els => els.map(e => e.scrollWidth <= e.clientWidth + 1)"
    assert all(page.locator("section.panel, .table-wrap").evaluate_all(fits))
    screenshot(page, "versions")

    page.click("#version-v2 a:has-text('Activate v2')")
    shift = page.inner_text("#shift")
    assert re.search(r"\d+ verdicts change: \d+ from real to fake and \d+ from fake to real", shift)
    assert severe_violations(page) == []
    screenshot(page, "activate")
    with app.app_context():
        assert db.session.scalar(select(ModelVersion.name).where(ModelVersion.is_active)) == "v1"
    page.click("button:has-text('Yes, activate v2')")
    assert "v2 is now active" in page.inner_text(".flashes")
    page.goto(f"{server}/admin/audit?action=activation")
    assert "v2 activated instead of v1" in page.inner_text("#audit")


def test_a_running_job_moves_its_bar_and_a_failed_one_says_why(app, server, new_page, worker):
    page = new_page()
    log_in_admin(page, server, app)
    with app.app_context():
        sleeper = submit("sleep", {"steps": 6, "seconds": 0.5}).id
        failing = submit("fail", {"message": "the disk is full"}).id
    page.goto(f"{server}/admin/jobs/{sleeper}")
    page.wait_for_function(
        "() => { const v = document.getElementById('job-progress').value; return v > 0 && v < 1; }"
    )
    page.wait_for_selector("#job-state:text('succeeded')", timeout=60_000)
    assert page.get_attribute("#job-progress", "value") == "1.0"
    page.goto(f"{server}/admin/jobs/{failing}")
    page.wait_for_selector("#job-state:text('failed')", timeout=60_000)
    assert page.inner_text(
        "#job-error"
    ) == "deliberate failure" or "the disk is full" in page.inner_text("#job-error")
    assert "Traceback" not in page.inner_text("#job-error")
    assert page.locator("details:has-text('Technical detail')").count() == 1
    screenshot(page, "job-failed")
