"""What an API fuzzer sends gets a 400 or a 404 with a message saying what is wrong, never a
500: integers beyond 64 bits in paths, query strings and bodies, fields of the wrong JSON type,
JSON nested deeper than the parser can follow, and numbers that are not numbers."""

from __future__ import annotations

import pytest

from tests.security.conftest import changed, snapshot

HUGE = "99999999999999999999"  # beyond a signed 64-bit integer

HUGE_PATHS = [
    f"/api/v1/jobs/{HUGE}",
    f"/api/v1/images/{HUGE}",
    f"/api/v1/review/items/{HUGE}",
    f"/api/v1/reports/{HUGE}/download",
    f"/review/image/{HUGE}/original",
    f"/review/image/{HUGE}/thumbnail",
    f"/review/image/{HUGE}/heatmap.png",
    f"/reports/{HUGE}/download",
    f"/reports/jobs/{HUGE}.json",
]

BAD_QUERIES = [
    f"/api/v1/images?after={HUGE}",
    f"/api/v1/decisions?image_id={HUGE}",
    f"/api/v1/jobs?after={HUGE}",
    f"/api/v1/predictions?after={HUGE}",
    f"/api/v1/queue?offset={HUGE}",
    "/api/v1/images?after=abc",
    "/api/v1/decisions?after=1.5",
    "/api/v1/decisions?image_id=abc",
    "/api/v1/jobs?limit=ten",
    "/api/v1/jobs?after=--5",
    "/api/v1/jobs?limit=",
    "/api/v1/jobs?after=%D9%A3",
    "/api/v1/queue?limit=-1",
]

BAD_BODIES = [
    ("/api/v1/reports", {"format": ["csv"]}),
    ("/api/v1/reports", {"format": "csv", "report": {"labels": 1}}),
    ("/api/v1/reports", {"format": "csv", "dataset": 5}),
    ("/api/v1/review/claim", {"filters": [1]}),
    ("/api/v1/review/claim", {"filters": {"bucket": ["label_issue"]}}),
    ("/api/v1/review/claim", {"image_id": int(HUGE)}),
    ("/api/v1/review/claim", {"holding": [int(HUGE)]}),
    ("/api/v1/review/claim", {"holding": ["a"]}),
    ("/api/v1/review/release", {"image_ids": ["a"]}),
    ("/api/v1/review/release", {"image_ids": [True]}),
    ("/api/v1/review/decisions", {"image_id": int(HUGE), "choice": "real"}),
    ("/api/v1/review/decisions", {"image_id": 1, "choice": ["real"]}),
    ("/api/v1/review/decisions", {"image_id": 1, "choice": "real", "note": {"x": 1}}),
    ("/api/v1/review/decisions", {"image_id": 1, "choice": "real", "model_version_id": "1"}),
]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("url", HUGE_PATHS)
def test_ids_beyond_64_bits_in_a_path_name_nothing(app, desk, session_for, url):
    client, _token = session_for("adam")
    response = client.get(url)
    assert response.status_code == 404, response.get_data(as_text=True)[:300]


@pytest.mark.parametrize("url", BAD_QUERIES)
def test_bad_numbers_in_a_query_are_a_400_that_names_the_argument(app, desk, url):
    response = app.test_client().get(url, headers=bearer(desk.admin_secret))
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    argument = url.split("?")[1].split("=")[0]
    assert argument in response.get_json()["message"]


@pytest.mark.parametrize("url, body", BAD_BODIES)
def test_fields_of_the_wrong_type_are_a_400_and_change_nothing(app, desk, url, body):
    before = snapshot(app)
    response = app.test_client().post(url, json=body, headers=bearer(desk.reviewer_secret))
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["message"]
    assert changed(before, snapshot(app)) in ([], ["api_tokens"])


@pytest.mark.parametrize("url", ["/api/v1/reports", "/api/v1/review/claim", "/api/v1/train"])
def test_json_nested_too_deeply_is_a_400(app, desk, url):
    deep = "[" * 50_000 + "]" * 50_000
    response = app.test_client().post(
        url, data=deep, content_type="application/json", headers=bearer(desk.admin_secret)
    )
    assert response.status_code == 400
    assert "JSON" in response.get_json()["message"]


def test_claiming_an_image_that_does_not_exist_is_a_404(app, desk):
    response = app.test_client().post(
        "/api/v1/review/claim", json={"image_id": 999_999}, headers=bearer(desk.reviewer_secret)
    )
    assert response.status_code == 404
    assert response.get_json()["message"] == "no image 999999"


def test_a_valid_page_cursor_still_pages(app, desk):
    client = app.test_client()
    first = client.get("/api/v1/images?limit=2", headers=bearer(desk.reviewer_secret)).get_json()
    after = first["next_after"]
    rest = client.get(f"/api/v1/images?after={after}", headers=bearer(desk.reviewer_secret))
    assert [item["id"] for item in rest.get_json()["items"]] == [desk.image_ids[2]]


NUL_URLS = [
    ("/api/v1/jobs?kind=%00", "the query string"),
    ("/api/v1/images?dataset=a%00b", "the query string"),
    ("/api/v1/jobs?%00=1", "the query string"),
    ("/api/v1/versions/v%001/activate", "the path"),
]


@pytest.mark.parametrize("url, where", NUL_URLS)
def test_a_nul_in_a_url_is_a_400_on_every_database(app, desk, url, where):
    """PostgreSQL's text cannot hold a NUL, so such a value used to reach it and fail (a 500)."""
    method = "post" if url.endswith("/activate") else "get"
    response = getattr(app.test_client(), method)(url, headers=bearer(desk.admin_secret))
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["message"] == f"{where} may not contain a NUL (0x00) character"


@pytest.mark.parametrize(
    "url, body",
    [
        ("/api/v1/review/decisions", {"image_id": 1, "choice": "real", "note": "a\u0000b"}),
        ("/api/v1/train", {"datasets": ["\u0000"]}),
        ("/api/v1/reports", {"format": "csv", "dataset": "x\u0000"}),
    ],
)
def test_a_nul_in_a_json_body_is_a_400_and_changes_nothing(app, desk, url, body):
    before = snapshot(app)
    response = app.test_client().post(url, json=body, headers=bearer(desk.admin_secret))
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["message"] == (
        "text in the body may not contain a NUL (0x00) character"
    )
    assert changed(before, snapshot(app)) in ([], ["api_tokens"])


def test_a_nul_in_a_form_is_a_400(app, desk, session_for):
    client, _token = session_for("adam")
    before = snapshot(app)
    response = client.post("/admin/train", data={"epochs": "1", "preset": "demo\x00"})
    assert response.status_code == 400
    assert "the form may not contain a NUL (0x00) character" in response.get_data(as_text=True)
    assert changed(before, snapshot(app)) in ([], ["api_tokens"])


@pytest.mark.parametrize(
    "dataset, file_name, message",
    [
        ("up\x00load", "a.png", "the form may not contain a NUL (0x00) character"),
        (
            "upload",
            "a\x00.png",
            "the name of an uploaded file may not contain a NUL (0x00) character",
        ),
    ],
)
def test_a_nul_in_a_multipart_form_is_a_400(app, desk, session_for, dataset, file_name, message):
    """A multipart body's text fields and file names go into the database too."""
    import io

    client, token = session_for("adam")
    before = snapshot(app)
    data = {"dataset": dataset, "csrf_token": token, "files": (io.BytesIO(b"not read"), file_name)}
    response = client.post("/admin/datasets/upload", data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert changed(before, snapshot(app)) in ([], ["api_tokens"])


def test_a_nul_in_the_name_of_a_checked_image_is_a_400(app, desk):
    """Once the caller is known: an anonymous upload gets its 401 unread."""
    import io

    anonymous = app.test_client().post(
        "/api/v1/checks",
        data={"file": (io.BytesIO(b"\x89PNG"), "x\x00.png")},
        content_type="multipart/form-data",
    )
    assert anonymous.status_code == 401

    response = app.test_client().post(
        "/api/v1/checks",
        data={"file": (io.BytesIO(b"\x89PNG"), "x\x00.png")},
        content_type="multipart/form-data",
        headers=bearer(desk.admin_secret),
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert (
        response.get_json()["message"]
        == "the name of an uploaded file may not contain a NUL (0x00) character"
    )


@pytest.mark.parametrize("disposition", ['form-data; filename="x.png"', "form-data"])
def test_a_multipart_part_without_a_name_is_no_500(app, desk, disposition):
    """Found by the long fuzz run: werkzeug names such a part None, and the NUL check read it."""
    body = (
        f"--B\r\nContent-Disposition: {disposition}\r\n"
        "Content-Type: application/octet-stream\r\n\r\nabc\r\n--B--\r\n"
    ).encode()
    response = app.test_client().post(
        "/api/v1/checks",
        data=body,
        content_type="multipart/form-data; boundary=B",
        headers=bearer(desk.admin_secret),
    )
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "multipart field 'file'" in response.get_json()["message"]


def test_the_document_says_free_text_holds_no_nul(app):
    from webapp.services.api.openapi import NO_NUL

    document = app.test_client().get("/api/v1/openapi.json").get_json()
    note = document["components"]["schemas"]["DecisionRequest"]["properties"]["note"]
    assert {"type": "string", "maxLength": 2000, "pattern": NO_NUL} in note["anyOf"]
    jobs = document["paths"]["/api/v1/jobs"]["get"]["parameters"]
    assert {p["name"]: p["schema"].get("pattern") for p in jobs}["kind"] == NO_NUL
    # a string with its own enum or format keeps it alone
    split = document["paths"]["/api/v1/images"]["get"]["parameters"]
    assert "pattern" not in {p["name"]: p["schema"] for p in split}["split"]
