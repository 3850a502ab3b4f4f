"""The review screen's pages and files: the desk, originals, thumbnails, the heatmap route."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from tests.factories import make_active_version, make_image, make_scored_image, make_version
from webapp.extensions import db
from webapp.models import Job, ModelVersion
from webapp.services.storage import original_path


@pytest.fixture
def item(app):
    with app.app_context():
        version = make_version("v1")
        image = make_scored_image(version, 0.5, label="unknown", fmt="PNG")
        return image.id


def test_desk_page_has_filters_counts_and_api_urls(auth, client, item):
    auth.login("reviewer")
    page = client.get("/review/?bucket=uncertain").get_data(as_text=True)
    assert '<option value="uncertain" selected>' in page
    assert 'data-has-model="1"' in page
    urls = json.loads(re.search(r"data-urls='([^']+)'", page).group(1))
    assert urls["claim"] == "/api/v1/review/claim" and urls["undo"] == "/api/v1/review/undo"
    assert "js/review.js" in page and "css/review.css" in page
    assert 'name="csrf-token"' in page
    assert "Escalations" not in page  # admins only


def test_desk_says_when_there_is_no_model(auth, client, app):
    auth.login("admin")
    page = client.get("/review/").get_data(as_text=True)
    assert 'data-has-model="0"' in page
    assert "No active model version yet" in page
    assert "Escalations" in page


def test_desk_can_open_a_named_image(auth, client, item):
    auth.login("reviewer")
    page = client.get(f"/review/?image={item}").get_data(as_text=True)
    assert f'data-open-image="{item}"' in page


def test_original_is_served_at_full_resolution(auth, client, item, app):
    auth.login("reviewer")
    with client.get(f"/review/image/{item}/original") as response:
        assert response.status_code == 200
        assert response.mimetype == "image/png"
        assert "immutable" in response.headers["Cache-Control"]
        with PILImage.open(io.BytesIO(response.get_data())) as picture:
            assert picture.size == (48, 40)


def test_thumbnail_and_its_fallback(auth, client, app):
    from webapp.services.storage import thumbnail_path

    with app.app_context():
        image = make_image(fmt="PNG")
        image_id, thumb = image.id, thumbnail_path(image.sha256)
    auth.login("reviewer")
    with client.get(f"/review/image/{image_id}/thumbnail") as response:
        assert response.status_code == 200 and response.mimetype == "image/jpeg"
    thumb.unlink()  # no thumbnail: the original stands in
    with client.get(f"/review/image/{image_id}/thumbnail") as response:
        assert response.status_code == 200 and response.mimetype == "image/png"


def test_missing_files_and_images_are_404(auth, client, app, item):
    auth.login("reviewer")
    assert client.get("/review/image/9999/original").status_code == 404
    with app.app_context():
        from webapp.extensions import db
        from webapp.models import Image

        original_path(db.session.get(Image, item)).unlink()
    response = client.get(f"/review/image/{item}/original")
    assert response.status_code == 404
    assert "missing from the image store" in response.get_data(as_text=True)


def test_heatmap_without_an_active_model_is_503(auth, client, app):
    with app.app_context():
        image_id = make_image().id
    auth.login("reviewer")
    response = client.get(
        f"/review/image/{image_id}/heatmap.png", headers={"Accept": "application/json"}
    )
    assert response.status_code == 503
    assert "No active model version" in response.get_json()["message"]


def test_heatmap_of_a_version_without_checkpoint_is_503(auth, client, item):
    auth.login("reviewer")
    response = client.get(f"/review/image/{item}/heatmap.png")
    assert response.status_code == 503
    assert "has no checkpoint" in response.get_data(as_text=True)


@pytest.fixture
def checkpointed_item(app):
    with app.app_context():
        version = make_active_version()
        return make_scored_image(version, 0.5, label="unknown", size=(40, 32)).id


NO_PYTORCH = (
    "torch",
    "torchvision",
    "model.explain",
    "model.predict",
    "webapp.services.training.scoring",
)


def test_the_web_process_queues_a_heatmap_job_and_never_imports_pytorch(
    auth, client, checkpointed_item, monkeypatch
):
    for name in NO_PYTORCH:  # an import of any of them in this request would now fail
        monkeypatch.setitem(sys.modules, name, None)
    auth.login("reviewer")
    url = f"/review/image/{checkpointed_item}/heatmap.png"
    first, again = client.get(url), client.get(url)
    assert first.status_code == again.status_code == 202
    assert first.get_json()["state"] == "queued" and first.headers["Retry-After"] == "1"
    assert again.get_json()["job_id"] == first.get_json()["job_id"]  # one job per image


def test_the_worker_computes_a_coloured_heatmap_once(auth, client, checkpointed_item, worker, app):
    from webapp.jobs import wait_for

    auth.login("reviewer")
    url = f"/review/image/{checkpointed_item}/heatmap.png"
    job_id = client.get(url).get_json()["job_id"]
    with app.app_context():
        assert wait_for(job_id, timeout=120).state == "succeeded"
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "image/png"
    data = response.get_data()
    response.close()
    with PILImage.open(io.BytesIO(data)) as picture:
        assert picture.size == (32, 32) and picture.mode == "RGB"  # the network's input size
        colours = {picture.getpixel((x, y)) for x in range(32) for y in range(32)}
    # Colours of the ramp (an untrained network at 32 px gives a nearly flat map), not grey.
    assert colours and all(len(set(pixel)) > 1 for pixel in colours)
    cached = client.get(url)  # served from the cache: no second job
    assert cached.status_code == 200 and cached.get_data() == data
    cached.close()
    with app.app_context():
        kinds = [job.kind for job in db.session.scalars(select(Job))]
    assert kinds == ["heatmap"]


def test_a_failed_heatmap_is_explained_and_retried_on_request(
    auth, client, checkpointed_item, worker, app
):
    from webapp.jobs import wait_for

    with app.app_context():
        version = db.session.scalar(select(ModelVersion))
        Path(version.checkpoint_path).write_bytes(b"not a checkpoint")
    auth.login("reviewer")
    url = f"/review/image/{checkpointed_item}/heatmap.png"
    job_id = client.get(url).get_json()["job_id"]
    with app.app_context():
        assert wait_for(job_id, timeout=120).state == "failed"
    failed = client.get(url, headers={"Accept": "application/json"})
    assert failed.status_code == 503
    assert "Could not compute the heatmap" in failed.get_json()["message"]
    retried = client.get(url + "?retry=1")
    assert retried.status_code == 202 and retried.get_json()["job_id"] != job_id


def test_escalations_page_lists_nothing_when_all_agree(auth, client, item):
    auth.login("admin")
    page = client.get("/review/escalations").get_data(as_text=True)
    assert "Nothing to resolve" in page
