"""The review screen's pages and files: the desk, originals, thumbnails, the heatmap route."""

from __future__ import annotations

import io
import json
import re
import sys
import types

import pytest
from PIL import Image as PILImage

from tests.factories import make_image, make_scored_image, make_version
from webapp.services.reviews import original_file


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
    from webapp.services.reviews import thumbnail_file

    with app.app_context():
        image = make_image(fmt="PNG")
        image_id, thumb = image.id, thumbnail_file(image)
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

        original_file(db.session.get(Image, item)).unlink()
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


def test_heatmap_without_the_scoring_service_is_503(auth, client, item, monkeypatch):
    monkeypatch.setitem(sys.modules, "webapp.services.scoring", None)  # makes the import fail
    auth.login("reviewer")
    response = client.get(f"/review/image/{item}/heatmap.png")
    assert response.status_code == 503
    assert "not installed" in response.get_data(as_text=True)


def test_heatmap_comes_from_the_scoring_service(auth, client, item, monkeypatch):
    calls = []

    def heatmap_png(image_id):
        calls.append(image_id)
        buffer = io.BytesIO()
        PILImage.new("RGB", (8, 8), (255, 0, 0)).save(buffer, format="PNG")
        return buffer.getvalue()

    scoring = types.ModuleType("webapp.services.scoring")
    scoring.heatmap_png = heatmap_png
    monkeypatch.setitem(sys.modules, "webapp.services.scoring", scoring)
    auth.login("reviewer")
    response = client.get(f"/review/image/{item}/heatmap.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert calls == [item]
    with PILImage.open(io.BytesIO(response.get_data())) as picture:
        assert picture.getpixel((0, 0)) == (255, 0, 0)


def test_heatmap_failure_is_explained(auth, client, item, monkeypatch, caplog):
    def heatmap_png(image_id):
        raise FileNotFoundError("checkpoint v1.pt is missing")

    scoring = types.ModuleType("webapp.services.scoring")
    scoring.heatmap_png = heatmap_png
    monkeypatch.setitem(sys.modules, "webapp.services.scoring", scoring)
    auth.login("reviewer")
    response = client.get(
        f"/review/image/{item}/heatmap.png", headers={"Accept": "application/json"}
    )
    assert response.status_code == 503
    assert "checkpoint v1.pt is missing" in response.get_json()["message"]


def test_escalations_page_lists_nothing_when_all_agree(auth, client, item):
    auth.login("admin")
    page = client.get("/review/escalations").get_data(as_text=True)
    assert "Nothing to resolve" in page
