"""Issue 15, problem 1: web uploads account for every file, failures are plain and listed, and
no failed or empty import leaves a dataset behind; a dataset can be deleted after confirming."""

from __future__ import annotations

import io
import zipfile

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.bad_inputs import image_bytes
from tests.browser.admin_pages import log_in_admin, screenshot, severe_violations
from tests.browser.conftest import CHROMIUM
from webapp.extensions import db
from webapp.models import AuditEvent, Dataset

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    return buffer.getvalue()


def upload_and_wait(page, base_url: str, name: str, data: bytes, mime: str) -> str:
    """Upload one file from the Datasets page; the import box's final text once it finished."""
    page.goto(f"{base_url}/admin/datasets/")
    page.set_input_files(
        "input[name=files]", files=[{"name": name, "mimeType": mime, "buffer": data}]
    )
    page.click("button:has-text('Upload and import')")
    page.wait_for_selector(".import-job .job-state:text-matches('succeeded|failed')")
    return page.inner_text(".import-job .job-text")


@pytest.mark.parametrize(
    ("name", "data", "mime", "message"),
    [
        (
            "notes.txt",
            b"my notes",
            "text/plain",
            "notes.txt (skipped: a .txt document, not an image)",
        ),
        ("empty.zip", _empty_zip(), "application/zip", "the upload holds no files"),
        (
            "zero.zip",
            b"",
            "application/zip",
            "zero.zip: not a readable zip archive: the file is empty",
        ),
    ],
)
def test_a_failed_upload_says_why_in_words_and_leaves_no_dataset(
    app, server, new_page, worker, name, data, mime, message
):
    page = new_page()
    log_in_admin(page, server, app)
    text = upload_and_wait(page, server, name, data, mime)
    assert message in text
    page.goto(f"{server}/admin/datasets/")
    row = page.locator(".imports-table tbody tr").first
    assert "failed" in row.inner_text() and message in row.inner_text()
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error:" not in body and app.instance_path not in body
    assert "No datasets yet" in body
    assert severe_violations(page) == []
    screenshot(page, f"imports-failed-{name}")
    with app.app_context():
        assert db.session.scalars(select(Dataset)).all() == []
        assert db.session.scalar(select(AuditEvent.summary).where(AuditEvent.action == "import"))


def test_import_page_names_every_file_and_dataset_deletion_confirms_counts(
    app, server, new_page, worker
):
    page = new_page()
    log_in_admin(page, server, app)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("trip/REAL/a.jpg", image_bytes(1))
        archive.writestr("trip/REAL/again.jpg", image_bytes(1))
        archive.writestr("trip/FAKE/b.jpg", image_bytes(2))
        archive.writestr("trip/FAKE/cut.jpg", b"\xff\xd8\xff\xe0 cut")
        archive.writestr("trip/README.md", b"# my trip")
    text = upload_and_wait(page, server, "trip.zip", buffer.getvalue(), "application/zip")
    assert "2 imported, 1 duplicates, 1 rejected" in text
    page.click(".import-job a:has-text('Every file')")
    for section, expected in [
        ("#imported", "trip/FAKE/b.jpg"),
        ("#duplicates", "again.jpg"),
        ("#rejected", "trip/FAKE/cut.jpg"),
        ("#skipped", "trip/README.md"),
    ]:
        assert expected.split("/")[-1] in page.inner_text(section), section
    assert "a .md document, not an image" in page.inner_text("#skipped")
    assert severe_violations(page) == []
    screenshot(page, "import-page")

    page.goto(f"{server}/admin/datasets/")
    page.click("table.datasets-table a:has-text('trip')")
    thumbs = page.locator(".thumbs figure")
    expect(thumbs).to_have_count(2)
    assert {"real", "fake"} <= set(page.locator(".thumbs .badge").all_inner_texts())
    assert severe_violations(page) == []
    page.click(".thumbs a >> nth=0")
    page.wait_for_load_state()
    assert "Predictions of every version" in page.inner_text("body")
    page.go_back()
    page.click("a:has-text('Delete dataset')")
    warning = page.inner_text(".warning")
    assert "2 images" in warning and "0 predictions" in warning and "0 review decisions" in warning
    assert severe_violations(page) == []
    screenshot(page, "dataset-delete")
    page.fill("input[name=confirm_name]", "not it")
    page.click("button:has-text('Delete trip')")
    assert "nothing was deleted" in page.inner_text(".flashes")
    page.fill("input[name=confirm_name]", "trip")
    page.click("button:has-text('Delete trip')")
    assert "Dataset trip deleted: 2 images" in page.inner_text(".flashes")
    with app.app_context():
        assert db.session.scalars(select(Dataset)).all() == []
