"""Hostile uploads through the real upload form and a real job worker.

Over the size limit: 413 with the limit in the message, and nothing saved. Decompression bombs,
files that only pretend to be images, zip slip and archive bombs (declared in the directory,
hidden behind a header that understates, or in one compressed tar stream): each is refused with
its reason; nothing of a refused archive is half-imported and nothing lands outside the store.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from tests.bad_inputs import (
    image_bytes,
    png_claiming,
    tar_with,
    zeros,
    zip_claiming,
    zip_with,
)
from tests.helpers import csrf_token
from webapp.extensions import db
from webapp.jobs import wait_for
from webapp.models import Image, ImportRun, Job, JobState


def upload(client, name: str, data: bytes):
    """POST the upload form with one file. The body is encoded here, in memory: the test
    client would spool a large one to a temporary file that it never closes."""
    token = csrf_token(client, "/admin/datasets/")
    file = FileStorage(io.BytesIO(data), filename=name, content_type="application/octet-stream")
    boundary, body = encode_multipart({"csrf_token": token, "dataset": "hostile", "files": file})
    return client.post(
        "/admin/datasets/upload",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def stored_files(app) -> list[Path]:
    instance = Path(app.instance_path)
    return [p for folder in ("images", "thumbnails") for p in (instance / folder).rglob("*.*")]


def counts(app) -> tuple[int, int]:
    with app.app_context():
        images = db.session.scalar(select(func.count(Image.id)))
        jobs = db.session.scalar(select(func.count(Job.id)))
        db.session.remove()
    return images, jobs


# ----------------------------------------------------------------------------- size limit


def test_upload_over_the_limit_is_413_with_the_limit_and_saves_nothing(app, auth, client):
    auth.login("admin")
    app.config["MAX_CONTENT_LENGTH"] = 3 * 1024**2
    response = upload(client, "big.zip", zeros(4))
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "over the limit of 3.0 MB" in page and "REALFAKE_MAX_UPLOAD_BYTES" in page
    assert "Nothing was saved" in page
    assert not (Path(app.instance_path) / "uploads").exists()
    assert counts(app) == (0, 0)


def test_api_request_over_the_limit_is_413_json(app, auth, client):
    auth.login("reviewer")
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    token = csrf_token(client, "/reports/")
    response = client.post(
        "/api/v1/reports",
        data=b'{"format": "csv", "pad": "' + b"x" * 20_000 + b'"}',
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 413
    body = response.get_json()
    assert body["status"] == 413 and body["error"] == "Upload too large"
    assert "over the limit of 10 kB" in body["message"]
    assert "REALFAKE_MAX_UPLOAD_BYTES=10000" in body["message"]
    assert counts(app) == (0, 0)


def test_the_limit_comes_from_the_environment(monkeypatch, tmp_path):
    from webapp.config import Config

    monkeypatch.setenv("REALFAKE_INSTANCE", str(tmp_path))
    monkeypatch.setenv("REALFAKE_MAX_UPLOAD_BYTES", str(5 * 1024**2))
    assert Config().MAX_CONTENT_LENGTH == 5 * 1024**2


# ----------------------------------------------------------------------------- hostile files


def import_result(app, client, name: str, data: bytes) -> dict:
    """Upload one file through the form and let the real worker import it."""
    response = upload(client, name, data)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    job_id = int(response.headers["Location"].rsplit("job=", 1)[1])
    with app.app_context():
        job = wait_for(job_id, timeout=120, poll=0.1)
        if job.state == JobState.SUCCEEDED:
            return job.result
        # Nothing could be imported: the job failed with a plain sentence (no traceback, no
        # server path), and its import run keeps the report of every file.
        assert job.state == JobState.FAILED, job.state
        assert job.error.startswith("no image was imported: "), job.error
        assert "Traceback" not in job.error and app.instance_path not in job.error
        run = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
        assert run.state == JobState.FAILED and run.report["error"] == job.error
        return run.report


def reasons(result: dict) -> dict[str, str]:
    return {item["path"]: item["reason"] for item in result["rejected"]}


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("bomb.png", png_claiming(100_000, 100_000), "decompression bomb"),
        ("holiday.jpg", b"#!/bin/sh\nrm -rf /\n" * 20, "not an image"),
        ("photo.png", b"<svg xmlns='http://www.w3.org/2000/svg'><script/></svg>", "not an image"),
        ("shot.jpg", b"%PDF-1.4\n" + b"0" * 500, "not an image"),
    ],
)
def test_hostile_image_is_rejected_with_its_reason(app, auth, client, worker, name, data, reason):
    auth.login("admin")
    result = import_result(app, client, name, data)
    assert result["imported"] == 0
    assert reasons(result)[name].startswith(reason), reasons(result)
    assert counts(app)[0] == 0 and stored_files(app) == []


def test_zip_slip_is_refused_and_writes_nothing_outside(app, auth, client, worker, tmp_path):
    auth.login("admin")
    members = {
        "real/ok.jpg": image_bytes(1),
        "../../../escape.jpg": image_bytes(2),
        "real/../../../../escape2.jpg": image_bytes(3),
        "/tmp/absolute.jpg": image_bytes(4),
    }
    result = import_result(
        app, client, "slip.zip", zip_with(members, tmp_path / "s.zip").read_bytes()
    )
    found = reasons(result)
    assert result["imported"] == 1
    for name in ("../../../escape.jpg", "/tmp/absolute.jpg"):
        assert found[name].startswith("path traversal"), found
    instance = Path(app.instance_path)
    for folder in (instance, instance.parent, instance.parent.parent, Path("/tmp")):
        assert not (folder / "escape.jpg").exists() and not (folder / "escape2.jpg").exists()
    assert not Path("/tmp/absolute.jpg").exists()


def assert_refused_whole(app, result: dict, name: str, reason: str) -> None:
    assert result["imported"] == 0 and result["duplicates"] == 0
    assert [item["path"] for item in result["rejected"]] == [name]
    assert result["rejected"][0]["reason"].startswith(reason)
    assert counts(app)[0] == 0 and stored_files(app) == []  # nothing half-imported


def test_zip_declaring_a_huge_size_is_refused_before_reading(app, auth, client, worker, tmp_path):
    auth.login("admin")
    members = {f"real/{i}.jpg": image_bytes(i) for i in range(6)}
    archive = zip_claiming(tmp_path / "d.zip", members, declared=4_000_000_000)
    result = import_result(app, client, "declared.zip", archive.read_bytes())
    assert_refused_whole(app, result, "declared.zip", "archive bomb: expands to over")


def test_tar_gz_bomb_is_refused_whole(app, auth, client, worker, tmp_path):
    auth.login("admin")
    members = {"real/ok.jpg": image_bytes(1), "real/filler.bmp": zeros(8)}
    archive = tar_with(members, tmp_path / "b.tar.gz", "w:gz")
    result = import_result(app, client, "bomb.tar.gz", archive.read_bytes())
    assert_refused_whole(app, result, "bomb.tar.gz", "archive bomb: expands")


def test_zip_member_with_a_huge_ratio_is_refused_alone(app, auth, client, worker, tmp_path):
    auth.login("admin")
    members = {"real/ok.jpg": image_bytes(1), "real/filler.png": zeros(8)}
    archive = zip_with(members, tmp_path / "r.zip")
    result = import_result(app, client, "ratio.zip", archive.read_bytes())
    assert result["imported"] == 1
    assert reasons(result)["real/filler.png"].startswith("archive bomb: the member expands")


def test_zip_understating_its_size_is_not_decompressed_past_the_claim(
    app, auth, client, worker, tmp_path
):
    """The header says 1 kB; the stream holds 8 MB of zeros. The reader stops at the claim."""
    auth.login("admin")
    archive = zip_claiming(tmp_path / "u.zip", {"real/liar.png": zeros(8)}, declared=1000)
    result = import_result(app, client, "liar.zip", archive.read_bytes())
    assert result["imported"] == 0
    assert reasons(result)["real/liar.png"].startswith("damaged archive member")
    assert counts(app)[0] == 0 and stored_files(app) == []
