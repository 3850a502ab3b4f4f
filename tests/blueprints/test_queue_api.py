"""The queue for scripts and the desk's JSON requests: API and CLI, same filters, same order."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from tests.factories import decide, make_dataset, make_scored_image, make_version
from tests.helpers import csrf_token, login, make_user
from webapp.extensions import db
from webapp.models import ReviewDecision

QUEUE_FIELDS = {
    "image_id",
    "file_name",
    "dataset",
    "bucket",
    "label",
    "verdict",
    "p_fake",
    "label_issue_score",
    "ood_score",
}


@pytest.fixture(autouse=True)
def _push_request_context():
    """Replace pytest-flask's pushed request context: its ``g`` (and so Flask-Login's user) would
    be shared by every request of the test, so two clients could not be two different users.
    (Its ``client`` fixture preserves contexts too: tests with two users use :func:`user_client`.)
    """
    yield


def user_client(app, username, role="reviewer"):
    """A fresh test client logged in as a new user."""
    with app.app_context():
        make_user(username, role=role)
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


@pytest.fixture
def scored(app):
    """Eight queue items over two datasets, and one confident, correct image outside the queue."""
    with app.app_context():
        version = make_version("v1")
        other = make_dataset("other")
        ids = [
            make_scored_image(version, 0.9, label="real", label_issue_score=0.9).id,
            make_scored_image(version, 0.1, label="fake").id,
            make_scored_image(version, 0.5, label="unknown", dataset=other).id,
            make_scored_image(version, 0.45, label="unknown", split="test").id,
            make_scored_image(version, 0.6, label="unknown", dataset=other).id,
            make_scored_image(version, 0.9, label="unknown", ood_score=0.97).id,
            make_scored_image(version, 0.99, label="unknown", audit_key=0.001).id,
            make_scored_image(version, 0.01, label="real", audit_key=0.002).id,
        ]
        make_scored_image(version, 0.02, label="real")
        return {"version_id": version.id, "ids": ids}


def api_post(client, path, body, token=None):
    token = token or csrf_token(client, "/review/")
    return client.post(path, json=body, headers={"X-CSRFToken": token})


def test_queue_endpoint_lists_items_in_order_with_the_documented_fields(auth, client, scored):
    auth.login("reviewer")
    response = client.get("/api/v1/queue")
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert [item["image_id"] for item in items] == scored["ids"]
    assert all(set(item) >= QUEUE_FIELDS for item in items)
    assert [item["bucket"] for item in items] == [
        "label_issue",
        "misclassified",
        "uncertain",
        "uncertain",
        "uncertain",
        "ood",
        "audit",
        "audit",
    ]
    assert "Server-Timing" in response.headers


@pytest.mark.parametrize(
    "query, expected_positions",
    [
        ("bucket=uncertain", [2, 3, 4]),
        ("dataset=other", [2, 4]),
        ("split=test", [3]),
        ("verdict=real", [1, 3, 7]),
        ("bucket=uncertain&dataset=other&verdict=fake", [2, 4]),
        ("limit=2&offset=1", [1, 2]),
    ],
)
def test_queue_filters(auth, client, scored, query, expected_positions):
    auth.login("reviewer")
    items = client.get(f"/api/v1/queue?{query}").get_json()["items"]
    assert [item["image_id"] for item in items] == [scored["ids"][i] for i in expected_positions]


@pytest.mark.parametrize(
    "query, status, message",
    [
        ("bucket=everything", 400, "unknown bucket"),
        ("dataset=missing", 404, "unknown dataset"),  # well formed; names nothing
        ("limit=lots", 400, "whole number"),
        ("limit=-1", 400, "between"),
    ],
)
def test_bad_queue_requests_say_why(auth, client, scored, query, status, message):
    auth.login("reviewer")
    response = client.get(f"/api/v1/queue?{query}")
    assert response.status_code == status
    assert message in response.get_json()["message"]


def test_counts_endpoint(auth, client, scored):
    auth.login("reviewer")
    data = client.get("/api/v1/queue/counts").get_json()
    assert data["counts"] == {
        "requested": 0,
        "label_issue": 1,
        "evidence": 0,
        "misclassified": 1,
        "uncertain": 3,
        "ood": 1,
        "audit": 2,
    }
    assert data["total"] == 8
    assert client.get("/api/v1/queue/counts?dataset=other").get_json()["total"] == 2


def test_cli_shows_the_same_queue_as_the_api(app, auth, client, scored):
    auth.login("reviewer")
    runner = app.test_cli_runner()
    for cli_args, query in [
        ([], ""),
        (["--bucket", "uncertain", "--limit", "2"], "bucket=uncertain&limit=2"),
    ]:
        result = runner.invoke(args=["queue", "show", "--json", *cli_args])
        assert result.exit_code == 0, result.output
        api_items = client.get(f"/api/v1/queue?{query}").get_json()["items"]
        assert json.loads(result.output)["items"] == api_items


def test_cli_table_counts_and_errors(app, scored):
    runner = app.test_cli_runner()
    table = runner.invoke(args=["queue", "show", "--dataset", "other"])
    assert table.exit_code == 0
    assert table.output.count("\n") == 3  # header and two rows
    assert "other/" in table.output
    counts = runner.invoke(args=["queue", "counts", "--json"])
    assert json.loads(counts.output)["total"] == 8
    bad = runner.invoke(args=["queue", "show", "--bucket", "nope"])
    assert bad.exit_code != 0 and "unknown bucket" in bad.output
    rebuilt = runner.invoke(args=["queue", "rebuild"])
    assert "8 queue entries" in rebuilt.output


def test_the_desk_serves_the_same_order_as_the_queue(auth, client, scored):
    """Deciding whatever the desk serves walks the queue in the order the API lists it."""
    auth.login("reviewer")
    listed = [item["image_id"] for item in client.get("/api/v1/queue").get_json()["items"]]
    token = csrf_token(client, "/review/")
    served = []
    while item := api_post(client, "/api/v1/review/claim", {}, token).get_json()["item"]:
        served.append(item["image_id"])
        response = api_post(
            client,
            "/api/v1/review/decisions",
            {"image_id": item["image_id"], "choice": "real"},
            token,
        )
        assert response.status_code == 201
    assert served == listed


def test_claim_returns_the_item_details(auth, client, scored):
    auth.login("reviewer")
    item = api_post(client, "/api/v1/review/claim", {"holding": []}).get_json()["item"]
    assert item["image_id"] == scored["ids"][0]
    assert item["bucket"] == "label_issue" and item["reason"]
    assert item["prediction"]["model_version_id"] == scored["version_id"]
    assert item["urls"]["image"] == f"/review/image/{item['image_id']}/original"
    assert item["lease_expires_at"].endswith("Z")
    with client.get(item["urls"]["image"]) as picture:
        assert picture.status_code == 200 and picture.mimetype == "image/jpeg"


def test_decision_undo_and_stats_round_trip(app, auth, client, scored):
    auth.login("reviewer")
    token = csrf_token(client, "/review/")
    first = api_post(client, "/api/v1/review/claim", {}, token).get_json()["item"]
    decided = api_post(
        client,
        "/api/v1/review/decisions",
        {"image_id": first["image_id"], "choice": "fake", "note": "warped ear"},
        token,
    )
    assert decided.status_code == 201
    body = decided.get_json()
    assert body["label"] == "fake" and body["stats"]["today"] == 1
    undone = api_post(client, "/api/v1/review/undo", {}, token).get_json()
    assert undone["reverted"]["id"] == body["decision"]["id"]
    assert undone["item"]["image_id"] == first["image_id"]  # back on my screen, leased to me
    assert undone["stats"]["all_time"] == 0
    assert client.get("/api/v1/review/stats").get_json()["today"] == 0
    with app.app_context():
        rows = db.session.scalars(select(ReviewDecision).order_by(ReviewDecision.id)).all()
        assert [(r.choice, r.note) for r in rows] == [("fake", "warped ear"), ("undo", "")]
    nothing = api_post(client, "/api/v1/review/undo", {}, token)
    assert nothing.status_code == 404


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"image_id": "seven", "choice": "real"}, 400, "image_id: Input should be a valid integer"),
        ({"choice": "real"}, 400, "image_id: Field required"),
        ({"image_id": 999999, "choice": "real"}, 404, "no image"),
        ({"image_id": 1, "choice": "probably"}, 400, "choice: Input should be 'real', 'fake'"),
        ({"image_id": 1, "choice": "real", "model_version_id": 77}, 404, "no model version"),
    ],
)
def test_bad_decisions_are_refused_with_a_reason(auth, client, scored, body, status, message):
    auth.login("reviewer")
    response = api_post(client, "/api/v1/review/decisions", body)
    assert response.status_code == status
    assert message in response.get_json()["message"]


def test_state_changes_need_the_csrf_token(auth, client, scored):
    auth.login("reviewer")
    response = client.post("/api/v1/review/claim", json={})
    assert response.status_code == 400
    assert "CSRF" in response.get_json()["error"]


def test_anonymous_api_calls_get_401_json(client, scored):
    response = client.get("/api/v1/queue")
    assert response.status_code == 401
    assert response.get_json()["status"] == 401


def test_an_item_held_by_another_reviewer_is_a_conflict(app, scored):
    client, other = user_client(app, "ann"), user_client(app, "bob")
    held = api_post(client, "/api/v1/review/claim", {}).get_json()["item"]["image_id"]
    token = csrf_token(other, "/review/")
    grab = api_post(other, "/api/v1/review/claim", {"image_id": held}, token)
    assert grab.status_code == 409, grab.get_json()
    decide = api_post(
        other, "/api/v1/review/decisions", {"image_id": held, "choice": "real"}, token
    )
    assert decide.status_code == 409
    assert "someone else" in decide.get_json()["message"]
    served = api_post(other, "/api/v1/review/claim", {}, token).get_json()["item"]["image_id"]
    assert served != held
    released = api_post(client, "/api/v1/review/release", {"image_ids": [held]})
    assert released.get_json() == {"released": 1}
    assert api_post(other, "/api/v1/review/claim", {"image_id": held}, token).status_code == 200


def test_escalations_endpoint_is_for_admins(app, scored):
    app.config["REVIEWS_PER_ITEM"] = 2

    client, admin = user_client(app, "ann"), user_client(app, "boss", role="admin")
    with app.app_context():
        ann, bob = make_user("ann"), make_user("bob")
        image_id = scored["ids"][2]
        decide(ann, image_id, "real")
        decide(bob, image_id, "fake")
    assert client.get("/api/v1/review/escalations").status_code == 403
    items = admin.get("/api/v1/review/escalations").get_json()["items"]
    assert [item["image_id"] for item in items] == [image_id]
    page = admin.get("/review/escalations").get_data(as_text=True)
    assert f"/review/?image={image_id}" in page
