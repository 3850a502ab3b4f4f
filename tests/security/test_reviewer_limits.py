"""A reviewer cannot start retraining, activate or cancel anything, or open an admin page: not
from the pages, not from the API with a session, not with a bearer token; and a refused request
changes nothing. (tests/test_roles.py walks the whole matrix of routes and roles; this file
holds the admin-only actions to the stricter "nothing changed" standard.)"""

from __future__ import annotations

import pytest

from tests.security.conftest import changed, snapshot

ADMIN_ACTIONS = [
    ("POST", "/admin/train", {"data": {"epochs": "1"}}),
    ("POST", "/api/v1/train", {"json": {"head_only": True}}),
    ("POST", "/admin/versions/v2/activate", {}),
    ("POST", "/api/v1/versions/v2/activate", {}),
    ("POST", "/admin/jobs/{job}/cancel", {}),
    ("POST", "/api/v1/jobs/{job}/cancel", {}),
    ("POST", "/admin/tokens", {"data": {"user_id": "1", "name": "mine now"}}),
    ("POST", "/admin/tokens/{token}/revoke", {}),
    ("POST", "/admin/datasets/upload", {"data": {"dataset": "x"}}),
]


def admin_pages(app) -> list[str]:
    """Every GET page under /admin/ (the thumbnails there are images every reviewer sees)."""
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin") and "GET" in rule.methods:
            if rule.endpoint == "datasets.thumbnail":
                continue
            values = dict.fromkeys(rule.arguments, 1) | (
                {"name": "v1"} if "name" in rule.arguments else {}
            )
            urls.append(app.url_map.bind("localhost").build(rule.endpoint, values))
    return sorted(urls)


@pytest.mark.parametrize("method, url, arguments", ADMIN_ACTIONS)
def test_reviewer_session_cannot_do_admin_actions(app, desk, session_for, method, url, arguments):
    client, token = session_for("rita")
    url = url.format(job=desk.job_id, token=desk.token_id)
    before = snapshot(app)
    response = client.open(url, method=method, headers={"X-CSRFToken": token}, **arguments)
    assert response.status_code == 403, (url, response.status_code)
    assert changed(before, snapshot(app)) == []


@pytest.mark.parametrize("method, url, arguments", [a for a in ADMIN_ACTIONS if "/api/" in a[1]])
def test_reviewer_token_cannot_do_admin_actions(app, desk, method, url, arguments):
    url = url.format(job=desk.job_id, token=desk.token_id)
    headers = {"Authorization": f"Bearer {desk.reviewer_secret}"}
    before = snapshot(app)
    response = app.test_client().open(url, method=method, headers=headers, **arguments)
    assert response.status_code == 403
    assert response.get_json()["status"] == 403
    after = snapshot(app)
    # The token's last use is recorded; nothing else may move.
    assert changed(before, after) in ([], ["api_tokens"])


def test_reviewer_cannot_open_any_admin_page(app, desk, session_for):
    reviewer, _ = session_for("rita")
    admin, _ = session_for("adam")
    pages = admin_pages(app)
    assert "/admin/versions" in pages and "/admin/datasets/" in pages  # the walk finds them
    for url in pages:
        assert reviewer.get(url).status_code == 403, url
        assert admin.get(url).status_code in (200, 404), url  # the page exists for admins
