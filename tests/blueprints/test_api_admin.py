"""The JSON API: role checks, JSON 401s, listings, rollback, idempotent training, reports,
and an OpenAPI document that covers every route."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import select

from tests.factories import (
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from tests.helpers import make_user
from webapp.extensions import db
from webapp.jobs import submit, wait_for
from webapp.models import Job, JobState, ModelVersion
from webapp.services.api.openapi import openapi_path
from webapp.services.people.tokens import create_token


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def world(app):
    """Two versions (v2 active), five images in two datasets, decisions, and three tokens."""
    with app.app_context():
        alpha, beta = make_dataset("alpha"), make_dataset("beta")
        v1 = make_version("v1", active=False)
        v2 = make_version("v2", active=True)
        images = [make_seeded_image(alpha, "real", "test", seed=i) for i in range(3)]
        images += [make_seeded_image(beta, "fake", "train", seed=10 + i) for i in range(2)]
        for index, image in enumerate(images):
            make_prediction(image, v1, 0.1 + 0.2 * index, ood_score=None, audit_key=0.0)
            make_prediction(image, v2, 0.9 - 0.2 * index, ood_score=0.5, audit_key=0.0)
        first = make_decision(images[0], "rita", "fake", v2, note="looks generated")
        make_decision(images[0], "rita", "undo", v2, reverts=first)
        make_decision(images[1], "sam", "real", v2)
        tokens = {
            role: create_token(make_user(name, role=role), f"{name}'s token")[1]
            for name, role in (("rita", "reviewer"), ("adam", "admin"))
        }
        tokens["sam"] = create_token(make_user("sam"), "sam's token")[1]
        return {"ids": [image.id for image in images], "tokens": tokens}


def get(client, url, who, world):
    return client.get(url, headers=bearer(world["tokens"][who]))


def post(client, url, who, world, **kwargs):
    return client.post(url, headers=bearer(world["tokens"][who]), **kwargs)


def protected_api_rules(app):
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
        and getattr(app.view_functions[rule.endpoint], "required_roles", None) is not None
    ]


def concrete(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "v1" if m.group(1) == "name" else "1", rule)


def test_anonymous_gets_401_json_on_every_protected_route(client, app, world):
    rules = protected_api_rules(app)
    assert len(rules) >= 12
    for rule in rules:
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(concrete(rule.rule), method=method)
            assert response.status_code == 401, (method, rule.rule)
            assert response.get_json()["status"] == 401


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/api/v1/versions/v1/activate"),
        ("post", "/api/v1/train"),
        ("post", "/api/v1/jobs/1/cancel"),
    ],
)
def test_reviewer_token_cannot_do_admin_work(client, world, method, url, app):
    response = client.open(url, method=method.upper(), headers=bearer(world["tokens"]["reviewer"]))
    assert response.status_code == 403
    assert response.get_json()["status"] == 403
    with app.app_context():
        assert db.session.scalar(select(ModelVersion.name).where(ModelVersion.is_active)) == "v2"
        assert db.session.scalar(select(Job).where(Job.kind == "train")) is None


def test_images_are_paged_and_filtered(client, world):
    ids = world["ids"]
    first = get(client, "/api/v1/images?limit=2", "reviewer", world).get_json()
    assert [i["id"] for i in first["items"]] == ids[:2] and first["next_after"] == ids[1]
    rest = get(client, f"/api/v1/images?limit=2&after={ids[1]}", "reviewer", world).get_json()
    assert [i["id"] for i in rest["items"]] == ids[2:4]
    beta = get(client, "/api/v1/images?dataset=beta", "reviewer", world).get_json()
    assert [i["id"] for i in beta["items"]] == ids[3:] and beta["next_after"] is None
    assert beta["items"][0]["dataset"] == "beta" and beta["items"][0]["import_label"] == "fake"
    test = get(client, "/api/v1/images?split=test", "reviewer", world).get_json()
    assert [i["id"] for i in test["items"]] == ids[:3]
    assert get(client, "/api/v1/images?dataset=none", "reviewer", world).status_code == 404
    assert get(client, "/api/v1/images?limit=0", "reviewer", world).status_code == 400


def test_image_detail_has_predictions_and_decisions(client, world):
    image_id = world["ids"][0]
    body = get(client, f"/api/v1/images/{image_id}", "reviewer", world).get_json()
    assert body["id"] == image_id and body["datasets"] == ["alpha"]
    assert [(p["version"], p["verdict"]) for p in body["predictions"]] == [
        ("v1", "real"),
        ("v2", "fake"),
    ]
    assert [(d["reviewer"], d["choice"]) for d in body["decisions"]] == [
        ("rita", "fake"),
        ("rita", "undo"),
    ]
    assert body["decisions"][1]["reverts_id"] == body["decisions"][0]["id"]
    assert body["decisions"][0]["note"] == "looks generated"
    assert get(client, "/api/v1/images/999999", "reviewer", world).status_code == 404


def test_predictions_of_a_version(client, world):
    active = get(client, "/api/v1/predictions", "reviewer", world).get_json()
    assert [p["version"] for p in active["items"]] == ["v2"] * 5
    assert active["items"][0]["p_fake"] == pytest.approx(0.9)
    old = get(client, "/api/v1/predictions?version=v1&limit=2", "reviewer", world).get_json()
    assert [p["image_id"] for p in old["items"]] == world["ids"][:2]
    assert old["next_after"] == world["ids"][1]
    missing = get(client, "/api/v1/predictions?version=v9", "reviewer", world)
    assert missing.status_code == 404 and "v9" in missing.get_json()["message"]


def test_decisions_listing_and_filters(client, world):
    every = get(client, "/api/v1/decisions", "reviewer", world).get_json()["items"]
    assert [d["choice"] for d in every] == ["fake", "undo", "real"]
    by_sam = get(client, "/api/v1/decisions?reviewer=sam", "reviewer", world).get_json()["items"]
    assert [d["image_id"] for d in by_sam] == [world["ids"][1]]
    on_image = get(client, f"/api/v1/decisions?image_id={world['ids'][0]}", "admin", world)
    assert len(on_image.get_json()["items"]) == 2


def test_rollback_and_promotion_via_api(client, world, app):
    response = post(client, "/api/v1/versions/v1/activate", "admin", world)
    assert response.status_code == 200
    body = response.get_json()
    assert body["version"]["name"] == "v1" and body["version"]["is_active"]
    assert body["scoring_job"] is None  # v1 has scored already
    versions = get(client, "/api/v1/versions", "reviewer", world).get_json()
    assert [(v["name"], v["is_active"]) for v in versions] == [("v2", False), ("v1", True)]
    assert post(client, "/api/v1/versions/v7/activate", "admin", world).status_code == 404


def test_activating_an_unscored_version_starts_scoring(client, world, app):
    with app.app_context():
        make_version("v3", active=False)
    body = post(client, "/api/v1/versions/v3/activate", "admin", world).get_json()
    assert body["version"]["is_active"]
    assert body["scoring_job"]["kind"] == "predict"
    assert body["scoring_job"]["params"] == {"version": "v3"}


def test_train_is_idempotent_and_checks_its_body(client, world, app):
    first = post(client, "/api/v1/train", "admin", world, json={"epochs": 1})
    again = post(client, "/api/v1/train", "admin", world, json={"epochs": 1})
    other = post(client, "/api/v1/train", "admin", world, json={"epochs": 3})
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    assert first.get_json()["params"] == {"epochs": 1}
    # Other parameters are not silently dropped: the queued training is named instead.
    assert other.status_code == 409
    assert f"training job {first.get_json()['id']}" in other.get_json()["message"]
    with app.app_context():
        assert len(db.session.scalars(select(Job).where(Job.kind == "train")).all()) == 1
    bad = post(client, "/api/v1/train", "admin", world, json={"epoch": 1})
    assert bad.status_code == 400
    assert bad.get_json()["message"] == "epoch: Extra inputs are not permitted"
    not_json = post(client, "/api/v1/train", "admin", world, data="epochs=1")
    assert not_json.status_code == 400


def test_jobs_reviewers_see_their_own(client, world, app):
    with app.app_context():
        admin_job = submit("sleep", {"steps": 1}, user_id=make_user("adam").id)
        rita_job = submit("sleep", {"steps": 1}, user_id=make_user("rita").id)
        admin_id, rita_id = admin_job.id, rita_job.id
    mine = get(client, "/api/v1/jobs", "reviewer", world).get_json()["items"]
    assert [job["id"] for job in mine] == [rita_id]
    every = get(client, "/api/v1/jobs?kind=sleep", "admin", world).get_json()["items"]
    assert [job["id"] for job in every] == [admin_id, rita_id]
    assert get(client, f"/api/v1/jobs/{admin_id}", "reviewer", world).status_code == 404
    assert get(client, f"/api/v1/jobs/{admin_id}", "admin", world).get_json()["kind"] == "sleep"
    cancelled = post(client, f"/api/v1/jobs/{rita_id}/cancel", "admin", world).get_json()
    assert cancelled["state"] == JobState.CANCELLED


def test_report_by_api_then_download(client, world, app, worker):
    response = post(
        client, "/api/v1/reports", "reviewer", world, json={"format": "csv", "split": "test"}
    )
    assert response.status_code == 202
    job = response.get_json()
    assert job["params"]["version"] == "v2" and job["params"]["report"] == "misclassified"
    with app.app_context():
        assert wait_for(job["id"], timeout=60, poll=0.05).state == JobState.SUCCEEDED
    download = get(client, f"/api/v1/reports/{job['id']}/download", "reviewer", world)
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    download.close()
    # v2 calls the three real test images FAKE (p_fake 0.9, 0.7, 0.5).
    assert [int(r["image_id"]) for r in rows] == world["ids"][:3]
    other = get(client, f"/api/v1/reports/{job['id']}/download", "sam", world)
    assert other.status_code == 404  # another reviewer's report
    by_admin = get(client, f"/api/v1/reports/{job['id']}/download", "admin", world)
    assert by_admin.status_code == 200
    by_admin.close()


def test_report_api_refuses_bad_requests(client, world, app):
    bad = post(client, "/api/v1/reports", "reviewer", world, json={"format": "pdf"})
    assert bad.status_code == 400
    assert "format: Input should be 'csv', 'json' or 'html'" in bad.get_json()["message"]
    with app.app_context():
        failed = submit("report", {"report": "misclassified", "format": "csv", "version": "x"})
        failed.user_id = make_user("rita").id
        db.session.commit()
        job_id = failed.id
    not_ready = get(client, f"/api/v1/reports/{job_id}/download", "reviewer", world)
    assert not_ready.status_code == 409 and "queued" in not_ready.get_json()["message"]


def test_openapi_lists_every_api_route(client, app, world):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1")]
    assert routes
    for rule in routes:
        path, _ = openapi_path(rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], (method, path)
    activate = document["paths"]["/api/v1/versions/{name}/activate"]["post"]
    assert activate["x-roles"] == ["admin"] and "403" in activate["responses"]
    images = document["paths"]["/api/v1/images/{image_id}"]["get"]
    assert images["parameters"][0] == {
        "name": "image_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},  # INTEGER keys
    }
    assert images["x-roles"] == ["admin", "reviewer"]
    decisions = document["paths"]["/api/v1/decisions"]["get"]
    assert decisions["summary"].endswith("(undo rows included: they name what they revert).")
    assert "limit" in [p["name"] for p in document["paths"]["/api/v1/images"]["get"]["parameters"]]
    assert set(all_refs(document)) <= {
        f"#/components/schemas/{n}" for n in document["components"]["schemas"]
    }


def all_refs(node) -> list[str]:
    """Every $ref in a JSON document."""
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in all_refs(value)]
    return []


def test_api_docs_page_shows_every_path(client, app, world):
    page = client.get("/api/v1/docs").get_data(as_text=True)
    document = client.get("/api/v1/openapi.json").get_json()
    for path in document["paths"]:
        assert f'<code class="path">{path}</code>' in page
    assert "<script" not in page
