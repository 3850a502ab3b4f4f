"""The reports page: everyone logged in exports; jobs are polled and downloaded by their owner."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.factories import make_dataset, make_prediction, make_seeded_image, make_version
from tests.helpers import csrf_token
from webapp.jobs import wait_for
from webapp.models import JobState


@pytest.fixture
def scored(app):
    with app.app_context():
        dataset = make_dataset("main")
        version = make_version("v1", active=True)
        for seed, (label, p_fake) in enumerate([("real", 0.8), ("fake", 0.9), ("fake", 0.1)]):
            make_prediction(
                make_seeded_image(dataset, label, "test", seed=seed),
                version,
                p_fake,
                ood_score=None,
                audit_key=0.0,
            )


def start(client, **fields):
    token = csrf_token(client, "/reports/")
    return client.post("/reports/", data={"csrf_token": token, **fields})


def test_anonymous_is_sent_to_login(client):
    response = client.get("/reports/")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_reviewer_builds_and_downloads_a_report(client, auth, scored, app, worker):
    auth.login("reviewer")
    page = client.get("/reports/").get_data(as_text=True)
    assert '<option value="v1" selected>v1 (active)</option>' in page
    assert '<option value="main">main</option>' in page
    response = start(client, report="misclassified", version="v1", format="csv", split="test")
    assert response.status_code == 302
    job_id = int(re.search(r'data-job="(\d+)"', client.get("/reports/").get_data(True)).group(1))
    with app.app_context():
        assert wait_for(job_id, timeout=60, poll=0.05).state == JobState.SUCCEEDED
    state = client.get(f"/reports/jobs/{job_id}.json").get_json()
    assert state["state"] == "succeeded" and state["download_url"].endswith("/download")
    download = client.get(state["download_url"])
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    download.close()
    assert [(r["label"], r["verdict"]) for r in rows] == [("real", "fake"), ("fake", "real")]
    page = client.get("/reports/").get_data(as_text=True)
    assert f'href="/reports/{job_id}/download"' in page


def test_labels_export_from_the_page(client, auth, scored, app, worker):
    auth.login("reviewer")
    assert start(client, report="labels", format="csv", dataset="main").status_code == 302
    job_id = int(re.search(r'data-job="(\d+)"', client.get("/reports/").get_data(True)).group(1))
    with app.app_context():
        assert wait_for(job_id, timeout=60, poll=0.05).state == JobState.SUCCEEDED
    download = client.get(f"/reports/{job_id}/download")
    assert download.get_data(as_text=True).count("\n") == 4  # header and three images
    download.close()


def test_bad_choice_is_explained(client, auth, scored):
    auth.login("reviewer")
    response = start(client, report="misclassified", version="v9", format="csv")
    assert response.status_code == 400
    assert "unknown model version &#39;v9&#39;" in response.get_data(as_text=True)


def test_others_cannot_see_or_download(client, auth, scored, app):
    auth.login("reviewer", username="rita")
    start(client, report="labels", format="csv")
    job_id = int(re.search(r'data-job="(\d+)"', client.get("/reports/").get_data(True)).group(1))
    auth.logout()
    auth.login("reviewer", username="sam")
    assert 'data-job="' not in client.get("/reports/").get_data(as_text=True)
    assert client.get(f"/reports/jobs/{job_id}.json").status_code == 404
    assert client.get(f"/reports/{job_id}/download").status_code == 404
    auth.logout()
    auth.login("admin")
    assert client.get(f"/reports/jobs/{job_id}.json").get_json()["state"] == "queued"
    assert client.get(f"/reports/{job_id}/download").status_code == 409  # not built yet
