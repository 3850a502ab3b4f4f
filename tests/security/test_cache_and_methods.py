"""Pages and API answers for a logged-in user are not kept by browsers or proxies
(``Cache-Control: no-store``), images keep their own caching; a 405 says which methods the URL
takes (``Allow``)."""

from __future__ import annotations

import pytest

from tests.helpers import ADMIN_PAGES


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_authenticated_pages_are_not_stored(app, desk, session_for, url):
    client, _token = session_for("adam")
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("url", ["/api/v1/images", "/api/v1/jobs", "/api/v1/review/stats"])
def test_api_answers_to_a_token_are_not_stored(app, desk, url):
    response = app.test_client().get(
        url, headers={"Authorization": f"Bearer {desk.reviewer_secret}"}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_images_keep_their_private_caching(app, desk, session_for):
    client, _token = session_for("rita")
    response = client.get(f"/review/image/{desk.image_ids[0]}/thumbnail")
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("private, max-age=")
    response.close()


@pytest.mark.parametrize(
    "method, url, allowed",
    [
        ("POST", "/api/v1/images", {"GET"}),
        ("DELETE", "/api/v1/review/claim", {"POST"}),
        ("PUT", "/review/", {"GET"}),
        ("GET", "/auth/logout", {"POST"}),
    ],
)
def test_a_405_names_the_allowed_methods(app, desk, method, url, allowed):
    headers = {"Authorization": f"Bearer {desk.reviewer_secret}"}
    response = app.test_client().open(url, method=method, headers=headers)
    assert response.status_code == 405
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
