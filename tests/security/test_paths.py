"""Nothing outside the image store and the instance's served folders is reachable from the web.

Every route that serves a file (originals, thumbnails by id and by hash, heatmaps, report
downloads on the pages and the API, static files) is tried with ``../``, encoded ``../``,
absolute paths, symbolic links planted in the store, and hash-like names of files that lie
elsewhere. The secret key and a file outside the instance are the targets: their bytes must never
come back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.factories import make_image, make_version
from webapp.extensions import db
from webapp.models import Image, Job, JobState
from webapp.services import storage

OUTSIDE_SECRET = b"outside-the-instance: you must not read this"


@pytest.fixture
def targets(app, tmp_path):
    """Paths an attacker wants: the secret key, the database, a file beside the instance."""
    outside = tmp_path / "outside.txt"
    outside.write_bytes(OUTSIDE_SECRET)
    instance = Path(app.instance_path)
    database = instance / "realfake.db"
    if not database.exists():  # on PostgreSQL there is no database file: a stand-in takes its place
        database.write_bytes(b"SQLite format 3\x00 stand-in for the database file")
    return {
        "secret key": instance / "secret_key",
        "database": database,
        "outside": outside,
    }


def leaked(response, targets) -> list[str]:
    """Which targets' contents the response carries."""
    body = response.get_data()
    response.close()
    found = []
    for name, path in targets.items():
        secret = path.read_bytes()[:64]
        if secret and secret in body:
            found.append(name)
    return found


def plant_link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    os.symlink(target, link)


TRAVERSALS = [
    "/static/../instance/secret_key",
    "/static/%2e%2e/instance/secret_key",
    "/static/..%2finstance%2fsecret_key",
    "/static/css/../../webapp/config.py",
    "/static/%2e%2e%2f%2e%2e%2fwebapp%2fconfig.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/..%5c..%5cwebapp%5cconfig.py",
    "/admin/datasets/thumbnails/../../secret_key.jpg",
    "/admin/datasets/thumbnails/..%2f..%2fsecret_key.jpg",
    "/admin/datasets/thumbnails/%2e%2e%2f%2e%2e%2fsecret_key.jpg",
    "/admin/datasets/thumbnails/%2fetc%2fpasswd.jpg",
    "/review/image/1/original/../../../secret_key",
    "/review/image/..%2f..%2fsecret_key/original",
    "/reports/..%2fsecret_key/download",
    "/api/v1/reports/..%2f..%2fsecret_key/download",
    "/instance/secret_key",
    "/secret_key",
    "/realfake.db",
    "/../instance/secret_key",
]


@pytest.mark.parametrize("url", TRAVERSALS)
def test_traversal_urls_reach_nothing(app, auth, client, targets, url):
    auth.login("admin")
    with app.app_context():
        make_image()  # image 1 exists: the id in the URLs is real
    response = client.get(url)
    assert leaked(response, targets) == []
    assert response.status_code in (308, 404)  # werkzeug merges slashes with a redirect


def test_static_serves_its_own_files_only(client, targets):
    css = client.get("/static/css/app.css")
    assert css.status_code == 200 and b"{" in css.data
    css.close()
    assert client.get("/static/../wsgi.py").status_code == 404


@pytest.fixture
def stored(app):
    """An image whose original and thumbnail lie in the store."""
    with app.app_context():
        image = make_image()
        return {"id": image.id, "sha256": image.sha256, "format": image.format}


@pytest.mark.parametrize("target", ["secret key", "database", "outside"])
def test_links_planted_in_the_store_are_not_followed(app, auth, client, stored, targets, target):
    auth.login("reviewer")
    with app.app_context():
        image = db.session.get(Image, stored["id"])
        plant_link(storage.original_path(image), targets[target])
        plant_link(storage.thumbnail_path(image.sha256), targets[target])
    for url in (
        f"/review/image/{stored['id']}/original",
        f"/review/image/{stored['id']}/thumbnail",
        f"/admin/datasets/thumbnails/{stored['sha256']}.jpg",
    ):
        response = client.get(url)
        assert leaked(response, targets) == [], url
        assert response.status_code == 404, url


def test_a_link_in_place_of_the_thumbnail_falls_back_to_the_original(app, auth, client, stored):
    auth.login("reviewer")
    with app.app_context():
        image = db.session.get(Image, stored["id"])
        original = storage.original_path(image).read_bytes()
        plant_link(storage.thumbnail_path(image.sha256), Path(app.instance_path) / "secret_key")
    response = client.get(f"/review/image/{stored['id']}/thumbnail")
    assert response.status_code == 200 and response.data == original
    response.close()


def test_a_linked_store_folder_still_serves(app, auth, client, stored, tmp_path):
    """An admin may keep the image store on another disk behind a symbolic link."""
    auth.login("reviewer")
    images = Path(app.instance_path) / "images"
    moved = tmp_path / "other-disk-images"
    images.rename(moved)
    os.symlink(moved, images)
    response = client.get(f"/review/image/{stored['id']}/original")
    assert response.status_code == 200 and response.data[:3] == b"\xff\xd8\xff"
    response.close()


def test_hash_like_names_of_files_elsewhere_are_not_served(app, auth, client, targets):
    """A file named like a stored thumbnail but lying outside the thumbnail folder."""
    auth.login("reviewer")
    sha = hashlib.sha256(b"not in the store").hexdigest()
    instance = Path(app.instance_path)
    for folder in (instance, instance / "images" / sha[:2], instance / "reports"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{sha}.jpg").write_bytes(targets["secret key"].read_bytes())
    response = client.get(f"/admin/datasets/thumbnails/{sha}.jpg")
    assert response.status_code == 404 and leaked(response, targets) == []


@pytest.mark.parametrize(
    "sha256, fmt",
    [
        ("../../secret_key", "JPEG"),
        pytest.param(
            "0" * 64,
            "/../../../secret_key",
            marks=pytest.mark.sqlite_only(
                reason="PostgreSQL refuses this 20-character value for images.format, "
                "a VARCHAR(16), so such a row cannot exist there"
            ),
        ),
        ("/etc/passwd", "JPEG"),
    ],
)
def test_crafted_rows_cannot_name_files_outside_the_store(app, auth, client, targets, sha256, fmt):
    """Even a row that names a path (a bug elsewhere, a hand-edited database) serves nothing
    outside the store."""
    auth.login("reviewer")
    with app.app_context():
        image = make_image()
        image.sha256, image.format = sha256, fmt
        db.session.commit()
        image_id = image.id
    for kind in ("original", "thumbnail"):
        response = client.get(f"/review/image/{image_id}/{kind}")
        assert leaked(response, targets) == [] and response.status_code == 404, kind


def report_job(app, file_name: str) -> int:
    with app.app_context():
        job = Job(
            kind="report",
            state=JobState.SUCCEEDED,
            params={"report": "labels", "format": "csv"},
            result={"file": file_name},
            progress={},
        )
        db.session.add(job)
        db.session.commit()
        return job.id


@pytest.mark.parametrize("file_name", ["../secret_key", "/etc/passwd", "linked.csv", "..", ""])
def test_report_downloads_serve_only_the_reports_folder(app, auth, client, targets, file_name):
    auth.login("admin")
    reports = Path(app.instance_path) / "reports"
    reports.mkdir(exist_ok=True)
    plant_link(reports / "linked.csv", targets["secret key"])
    job_id = report_job(app, file_name)
    for url in (f"/reports/{job_id}/download", f"/api/v1/reports/{job_id}/download"):
        response = client.get(url)
        assert leaked(response, targets) == [], url
        assert response.status_code == 409, url  # "no file to download"


def test_a_real_report_still_downloads(app, auth, client):
    auth.login("admin")
    reports = Path(app.instance_path) / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "job-1-labels.csv").write_text("sha256,label\n")
    job_id = report_job(app, "job-1-labels.csv")
    response = client.get(f"/api/v1/reports/{job_id}/download")
    assert response.status_code == 200 and response.data == b"sha256,label\n"
    response.close()


def test_a_link_planted_in_the_heatmap_cache_is_not_served(app, auth, client, stored, targets):
    auth.login("reviewer")
    with app.app_context():
        make_version("v1")
    cache = Path(app.instance_path) / "cache" / "heatmaps" / "v1"
    plant_link(cache / f"{stored['id']}.png", targets["secret key"])
    response = client.get(f"/review/image/{stored['id']}/heatmap.png")
    assert leaked(response, targets) == []
    assert response.status_code == 503  # v1 has no checkpoint: nothing to compute it with
