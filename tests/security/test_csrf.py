"""CSRF on every state change: each registered route that accepts POST, PUT, PATCH or DELETE,
sent by a logged-in user of the right role with a body that would work, is refused without the
token and changes nothing; the same request with the token goes through (so the refusal is the
token's doing, not a bad body). Bearer-token API calls are the documented exception.

Data-driven from ``app.url_map``: a state-changing route added later without an entry in
``ATTACKS`` fails :func:`test_every_state_changing_route_is_covered`.
"""

from __future__ import annotations

import io

import pytest

from tests.factories import make_image
from tests.helpers import make_image_bytes
from tests.security.conftest import changed, snapshot

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def upload_form(desk):
    return {
        "data": {"dataset": "sneaky", "files": (io.BytesIO(make_image_bytes(3)), "a.jpg")},
        "content_type": "multipart/form-data",
    }


# endpoint: (who sends it, method, url from the desk's ids, request arguments). The users are
# the least privileged role each route admits; None is a visitor who is not logged in.
ATTACKS = {
    "auth.login": (
        None,
        "POST",
        lambda d: "/auth/login",
        lambda d: {"data": {"username": "rita", "password": "correct horse battery"}},
    ),
    "auth.logout": ("rita", "POST", lambda d: "/auth/logout", lambda d: {}),
    "datasets.upload": ("adam", "POST", lambda d: "/admin/datasets/upload", upload_form),
    "admin.cancel_job": ("adam", "POST", lambda d: f"/admin/jobs/{d.job_id}/cancel", None),
    "admin.tokens": (
        "adam",
        "POST",
        lambda d: "/admin/tokens",
        lambda d: {"data": {"user_id": "1", "name": "forged"}},
    ),
    "admin.revoke_token": ("adam", "POST", lambda d: f"/admin/tokens/{d.token_id}/revoke", None),
    "admin.train": ("adam", "POST", lambda d: "/admin/train", lambda d: {"data": {"epochs": "1"}}),
    "admin.activate": (
        "adam",
        "POST",
        lambda d: f"/admin/versions/{d.spare_version}/activate",
        None,
    ),
    "datasets.archive": (
        "adam",
        "POST",
        lambda d: f"/admin/datasets/{d.dataset_id}/archive",
        lambda d: {"data": {"archived": "1"}},
    ),
    "datasets.delete": (
        "adam",
        "POST",
        lambda d: f"/admin/datasets/{d.dataset_id}/delete",
        lambda d: {"data": {"confirm_name": "set"}},
    ),
    "people.create_user": (
        "adam",
        "POST",
        lambda d: "/admin/users",
        lambda d: {"data": {"username": "mallory", "password": "a long password", "role": "admin"}},
    ),
    "people.change_user": (
        "adam",
        "POST",
        lambda d: "/admin/users/1",  # rita
        lambda d: {"data": {"action": "disable"}},
    ),
    "browser.selection": (
        "adam",
        "POST",
        lambda d: "/admin/images/selection",
        lambda d: {"data": {"action": "review", "image_id": str(d.image_ids[0])}},
    ),
    "api_admin.cancel_job": ("adam", "POST", lambda d: f"/api/v1/jobs/{d.job_id}/cancel", None),
    "api_admin.start_report": (
        "rita",
        "POST",
        lambda d: "/api/v1/reports",
        lambda d: {"json": {"report": "labels", "format": "csv"}},
    ),
    "api_admin.train": ("adam", "POST", lambda d: "/api/v1/train", lambda d: {"json": {}}),
    "api_admin.activate_version": (
        "adam",
        "POST",
        lambda d: f"/api/v1/versions/{d.other_version}/activate",
        None,
    ),
    "api.review_claim": ("rita", "POST", lambda d: "/api/v1/review/claim", lambda d: {"json": {}}),
    "api.review_decide": (
        "rita",
        "POST",
        lambda d: "/api/v1/review/decisions",
        lambda d: {"json": {"image_id": d.image_ids[2], "choice": "fake"}},
    ),
    "api.review_release": (
        "rita",
        "POST",
        lambda d: "/api/v1/review/release",
        lambda d: {"json": {}},
    ),
    "api.review_undo": ("rita", "POST", lambda d: "/api/v1/review/undo", lambda d: {"json": {}}),
    "check_api.create_check": (
        "rita",
        "POST",
        lambda d: "/api/v1/checks",
        lambda d: {
            "data": {"file": (io.BytesIO(make_image_bytes(7)), "c.jpg")},
            "content_type": "multipart/form-data",
        },
    ),
    "check_api.send_check_to_review": (
        "rita",
        "POST",
        lambda d: f"/api/v1/checks/{d.check_id}/review",
        None,
    ),
    "check.send_to_review": ("rita", "POST", lambda d: f"/check/{d.check_id}/review", None),
    "reports.index": (
        "rita",
        "POST",
        lambda d: "/reports/",
        lambda d: {"data": {"report": "labels", "format": "csv"}},
    ),
}


def state_changing_endpoints(app) -> set[str]:
    return {rule.endpoint for rule in app.url_map.iter_rules() if rule.methods & STATE_CHANGING}


def send(client, endpoint: str, desk, headers=None):
    _, method, url, arguments = ATTACKS[endpoint]
    kwargs = arguments(desk) if arguments else {}
    response = client.open(url(desk), method=method, headers=headers or {}, **kwargs)
    response.close()
    return response


def is_csrf_refusal(response) -> bool:
    return response.status_code in (400, 403) and b"CSRF" in response.data


def test_every_state_changing_route_is_covered(app):
    assert state_changing_endpoints(app) == set(ATTACKS)


@pytest.mark.parametrize("endpoint", sorted(ATTACKS))
def test_state_change_without_the_token_is_refused_and_changes_nothing(
    app, desk, session_for, endpoint
):
    who = ATTACKS[endpoint][0]
    client, token = session_for(who)
    before = snapshot(app)
    refused = send(client, endpoint, desk)
    assert is_csrf_refusal(refused), (refused.status_code, refused.data[:300])
    assert changed(before, snapshot(app)) == []
    assert logged_in_as(client) == who  # neither logged in nor out

    accepted = send(client, endpoint, desk, headers={"X-CSRFToken": token})
    assert accepted.status_code < 400, (accepted.status_code, accepted.data[:300])
    after = snapshot(app)
    session_changed = logged_in_as(client) != who
    assert changed(before, after) or session_changed, "the control request changed nothing"


def logged_in_as(client) -> str | None:
    """Whose session the client carries, read from the page header."""
    page = client.get("/reports/", follow_redirects=True).get_data(as_text=True)
    for name in ("rita", "adam"):
        if f"{name} · " in page:
            return name
    return None


@pytest.mark.parametrize("header", ["X-CSRFToken", "X-CSRF-Token"])
def test_json_api_with_a_cookie_session_needs_the_header(app, desk, session_for, header):
    client, token = session_for("rita")
    body = {"image_id": desk.image_ids[2], "choice": "real"}
    before = snapshot(app)
    response = client.post("/api/v1/review/decisions", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "CSRF token missing or invalid"
    assert changed(before, snapshot(app)) == []
    response = client.post("/api/v1/review/decisions", json=body, headers={header: token})
    assert response.status_code == 201


def test_a_token_from_another_session_is_refused(app, desk, session_for):
    rita, _ = session_for("rita")
    _, attackers_token = session_for(None)  # the attacker's own, perfectly valid, token
    before = snapshot(app)
    response = rita.post(
        "/api/v1/review/decisions",
        json={"image_id": desk.image_ids[2], "choice": "real"},
        headers={"X-CSRFToken": attackers_token},
    )
    assert is_csrf_refusal(response)
    assert changed(before, snapshot(app)) == []


def test_a_forged_token_is_refused(app, desk, session_for):
    client, token = session_for("adam")
    before = snapshot(app)
    response = client.post("/admin/train", data={"csrf_token": token[:-4] + "AAAA"})
    assert is_csrf_refusal(response)
    assert changed(before, snapshot(app)) == []


@pytest.mark.parametrize("endpoint", sorted(e for e in ATTACKS if e.startswith("api")))
def test_bearer_token_api_calls_need_no_csrf_token(app, desk, endpoint):
    """The documented exception: a browser cannot attach an Authorization header from another
    site, and a script holding a token has nothing to forge."""
    who = ATTACKS[endpoint][0]
    secret = desk.admin_secret if who == "adam" else desk.reviewer_secret
    with app.app_context():
        make_image()  # something left to claim or decide
    response = send(app.test_client(), endpoint, desk, {"Authorization": f"Bearer {secret}"})
    assert not is_csrf_refusal(response)
    assert response.status_code < 400, (response.status_code, response.data[:300])
