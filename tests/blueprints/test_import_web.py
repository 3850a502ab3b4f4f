"""The datasets pages: upload, job progress, reports, audit plots; admins only."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.bad_inputs import image_bytes, kaggle_layout, zip_with
from tests.helpers import csrf_token
from webapp.extensions import db
from webapp.jobs import wait_for
from webapp.models import Dataset, Image, JobState
from webapp.services.importing.importer import import_path


def upload(client, files, **form):
    token = csrf_token(client, "/admin/datasets/")
    data = {"csrf_token": token, **form, "files": files}
    return client.post("/admin/datasets/upload", data=data, content_type="multipart/form-data")


def job_id_from(response) -> int:
    return int(re.search(r"job=(\d+)", response.headers["Location"]).group(1))


@pytest.mark.parametrize(
    "url", ["/admin/datasets/", "/admin/datasets/stats", "/admin/datasets/jobs/1"]
)
def test_pages_are_for_admins_only(auth, client, url):
    assert client.get(url).status_code == 302  # to the login page
    auth.login("reviewer")
    assert client.get(url).status_code == 403


def test_upload_zip_runs_import_job_and_reports(app, auth, client, worker, tmp_path):
    auth.login("admin")
    members = dict(kaggle_layout(2), **{"data/Train/REAL/broken.jpg": b"\xff\xd8\xff\xe0 cut"})
    archive = zip_with(members, tmp_path / "kaggle-upload.zip")
    response = upload(client, [(io.BytesIO(archive.read_bytes()), "kaggle-upload.zip")])
    assert response.status_code == 302
    job_id = job_id_from(response)
    with app.app_context():
        job = wait_for(job_id, timeout=120, poll=0.1)
        assert job.state == JobState.SUCCEEDED, job.error
        assert job.progress["done"] == job.progress["total"] == 9
        dataset = db.session.scalar(select(Dataset).where(Dataset.name == "kaggle-upload"))
        assert db.session.scalar(select(Image.label).where(Image.original_path.like("%TEST/Real%")))
    status = client.get(f"/admin/datasets/jobs/{job_id}").get_json()
    assert status["state"] == "succeeded" and status["finished"]
    assert (status["imported"], status["rejected"]) == (8, 1)
    assert status["detail_url"] == f"/admin/datasets/{dataset.id}"
    page = client.get(status["detail_url"]).get_data(as_text=True)
    assert "8 imported" in page and status["import_url"] in page
    files = client.get(status["import_url"]).get_data(as_text=True)  # every file, named
    assert "data/Train/REAL/broken.jpg" in files and "truncated image" in files
    index = client.get("/admin/datasets/").get_data(as_text=True)
    assert "kaggle-upload" in index
    uploads = Path(app.instance_path) / "uploads"
    assert list(uploads.iterdir()) == []  # the job removed the upload once imported


def test_upload_images_with_label_and_folder_paths(app, auth, client, worker):
    auth.login("admin")
    files = [
        (io.BytesIO(image_bytes(1)), "holiday/REAL/a.jpg"),
        (io.BytesIO(image_bytes(2)), "holiday/FAKE/b.jpg"),
        (io.BytesIO(image_bytes(3)), "../../escape.jpg"),
    ]
    job_id = job_id_from(upload(client, files, dataset="  trip  "))
    with app.app_context():
        assert wait_for(job_id, timeout=60, poll=0.1).state == JobState.SUCCEEDED
        labels = {i.file_name: i.label for i in db.session.scalars(select(Image))}
        paths = {i.original_path for i in db.session.scalars(select(Image))}
    assert labels == {"a.jpg": "real", "b.jpg": "fake", "escape.jpg": "unknown"}
    assert paths == {"holiday/REAL/a.jpg", "holiday/FAKE/b.jpg", "escape.jpg"}
    forced = job_id_from(
        upload(client, [(io.BytesIO(image_bytes(4)), "c.jpg")], dataset="more", label="fake")
    )
    with app.app_context():
        assert wait_for(forced, timeout=60, poll=0.1).result["by_label"] == {"fake": 1}
        assert db.session.scalar(select(Dataset.name).where(Dataset.name == "trip"))


def test_upload_without_files_is_refused(auth, client):
    auth.login("admin")
    response = upload(client, [], dataset="x")
    assert response.status_code == 302
    assert "choose an archive" in client.get("/admin/datasets/").get_data(as_text=True)


def test_upload_over_the_size_limit_gets_413(app, auth, client):
    auth.login("admin")
    app.config["MAX_CONTENT_LENGTH"] = 50_000
    response = upload(client, [(io.BytesIO(b"\x00" * 100_000), "big.zip")])
    assert response.status_code == 413


def test_stats_page_draws_plots_and_warns(app, auth, client, tmp_path):
    files = {f"real/{i}.jpg": image_bytes(i, quality=95) for i in range(12)}
    files.update({f"fake/{i}.png": image_bytes(100 + i, "PNG", size=(64, 64)) for i in range(12)})
    with app.app_context():
        import_path(zip_with(files, tmp_path / "shortcut.zip"))
    auth.login("admin")
    page = client.get("/admin/datasets/stats?dataset=shortcut").get_data(as_text=True)
    assert page.count("<svg") >= 8
    assert 'class="bar fake"' in page and 'class="bar real"' in page
    assert "file format separates real from fake" in page
    assert "image size separates real from fake" in page
    assert client.get("/admin/datasets/stats?dataset=nope").status_code == 404
    assert client.get("/admin/datasets/stats").status_code == 200


def test_thumbnails_are_served_to_reviewers(app, auth, client, tmp_path):
    with app.app_context():
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "a.jpg").write_bytes(image_bytes(5, size=(300, 200)))
        import_path(folder)
        sha = db.session.scalar(select(Image.sha256))
    auth.login("reviewer")
    response = client.get(f"/admin/datasets/thumbnails/{sha}.jpg")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.data[:3] == b"\xff\xd8\xff"
    response.close()  # send_file streams from an open file
    assert client.get(f"/admin/datasets/thumbnails/{'0' * 64}.jpg").status_code == 404
    assert client.get("/admin/datasets/thumbnails/..%2f..%2fsecret_key.jpg").status_code == 404
