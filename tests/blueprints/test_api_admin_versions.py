"""Versions side by side: the comparison service, its SVG plots, the page, rollback."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import select

from tests.factories import (
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from tests.helpers import csrf_token
from webapp.extensions import db
from webapp.models import ModelVersion
from webapp.services.reporting import plots
from webapp.services.training import comparison

SVG = "{http://www.w3.org/2000/svg}"
HISTORY = [
    {"epoch": 1, "train_loss": 0.7, "train_acc": 0.55, "val_loss": 0.65, "val_acc": 0.6},
    {"epoch": 2, "train_loss": 0.5, "train_acc": 0.75, "val_loss": 0.55, "val_acc": 0.7},
    {"epoch": 3, "train_loss": 0.3, "train_acc": 0.9, "val_loss": 0.5, "val_acc": None},
]


@pytest.fixture
def versions_case(app_ctx):
    """Test split: 4 trainable labelled images (+1 eval-only, +1 unknown); v1, v2 active, v3.

    v1 gets 2 of the 4 right, v2 all 4; v1 also scored a fifth test image v2 did not (so it
    is left out of the common set); v3 scored nothing. Two images were reviewed.
    """
    main, held_out = make_dataset("main"), make_dataset("held-out", evaluation_only=True)
    v1 = make_version("v1", history=HISTORY, active=False)
    v2 = make_version("v2", active=True, history=HISTORY[:2], parent=v1)
    v3 = make_version("v3", active=False)
    labels = ["real", "real", "fake", "fake"]
    images = [make_seeded_image(main, label, "test", seed=i) for i, label in enumerate(labels)]
    for image, p1, p2 in zip(images, (0.2, 0.7, 0.4, 0.9), (0.1, 0.3, 0.8, 0.6), strict=True):
        make_prediction(image, v1, p1, ood_score=None, audit_key=0.0)
        make_prediction(image, v2, p2, ood_score=None, audit_key=0.0)
    only_v1 = make_seeded_image(main, "real", "test", seed=10)
    make_prediction(only_v1, v1, 0.9, ood_score=None, audit_key=0.0)
    make_prediction(
        make_seeded_image(held_out, "fake", "test", seed=11), v1, 0.1, ood_score=None, audit_key=0.0
    )
    make_seeded_image(main, "unknown", "test", seed=12)
    make_seeded_image(main, "real", "train", seed=13)
    make_decision(images[1], "ann", "real", v1, note="v1 was wrong")
    make_decision(images[2], "ann", "fake", v2)
    undone = make_decision(images[0], "bob", "real", v2)
    make_decision(images[0], "bob", "undo", v2, reverts=undone)
    return {"images": images, "versions": (v1, v2, v3), "only_v1": only_v1}


def test_versions_are_measured_on_the_same_test_images(versions_case):
    v1, v2, v3 = versions_case["versions"]
    measured = comparison.measure([v1, v2, v3], comparison.fixed_test_split())
    assert measured["n_total"] == 5  # the eval-only, unknown and train images are not in it
    assert measured["n"] == 4  # the image only v1 scored is left out
    assert measured["v1"]["accuracy"] == pytest.approx(0.5)
    assert measured["v2"]["accuracy"] == pytest.approx(1.0)
    assert measured["v1"]["confusion_matrix"] == [[1, 1], [1, 1]]
    assert measured["v2"]["per_class"]["fake"]["recall"] == pytest.approx(1.0)
    assert measured["v3"] is None
    assert measured["v2"]["roc"]["tpr"][-1] == pytest.approx(1.0)
    assert sum(measured["v1"]["reliability"]["count"]) == 4


def test_reviewed_images_count_standing_decisions_only(versions_case):
    images = versions_case["images"]
    reviewed = comparison.reviewed_images()
    assert reviewed.ids == [images[1].id, images[2].id]  # the undone review does not count
    v1, v2, _ = versions_case["versions"]
    measured = comparison.measure([v1, v2], reviewed)
    assert measured["v1"]["accuracy"] == pytest.approx(0.0)  # called real FAKE, fake REAL
    assert measured["v2"]["accuracy"] == pytest.approx(1.0)


def test_verdict_changes_against_the_previous_version(versions_case):
    v1, v2, v3 = versions_case["versions"]
    images = versions_case["images"]
    assert comparison.previous_version(v2).name == "v1"
    assert comparison.previous_version(v1) is None
    assert comparison.count_verdict_changes(v2, v1) == 2  # images 1 and 2 flipped
    assert comparison.count_verdict_changes(v1, None) is None
    assert comparison.count_verdict_changes(v3, v2) == 0
    rows = comparison.verdict_changes(v2, v1)
    assert [row["image_id"] for row in rows] == [images[1].id, images[2].id]
    assert rows[0]["before"]["verdict"] == "fake" and rows[0]["now"]["verdict"] == "real"
    assert [r["image_id"] for r in comparison.verdict_changes(v2, v1, after=images[1].id)] == [
        images[2].id
    ]


def parse_svg(markup) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg"
    return root


def test_confusion_matrix_svg_shows_each_count():
    root = parse_svg(plots.confusion_matrix_svg([[7, 3], [2, 8]], "cm"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for value in ("7", "3", "2", "8", "70%", "30%", "20%", "80%"):
        assert value in texts
    assert len(root.findall(f"{SVG}rect")) == 4


def test_roc_and_reliability_draw_one_line_per_version():
    roc = {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.9, 1.0], "thresholds": [1, 0.5, 0]}
    root = parse_svg(plots.roc_svg([("v1", roc, 0.8), ("v2", None, None)]))
    assert len(root.findall(f"{SVG}polyline")) == 2  # the diagonal and v1
    assert "v1 0.800" in [t.text for t in root.iter(f"{SVG}text")]
    curve = {"mean_p_fake": [0.1, None, 0.9], "fraction_fake": [0.0, None, 1.0]}
    root = parse_svg(plots.reliability_svg([("v1", curve), ("v2", curve)]))
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 3 and len(lines[1].get("points").split()) == 2  # empty bin skipped


def test_training_curves_skip_missing_values():
    root = parse_svg(plots.training_curves_svg(HISTORY))
    lines = [line.get("points").split() for line in root.findall(f"{SVG}polyline")]
    assert [len(points) for points in lines] == [3, 3, 3, 2]  # val_acc of epoch 3 is missing
    empty = parse_svg(plots.training_curves_svg(None))
    assert "no training history" in [t.text for t in empty.iter(f"{SVG}text")]


def test_a_single_epoch_is_drawn_as_dots():
    root = parse_svg(plots.training_curves_svg(HISTORY[:1]))
    dots = [c for c in root.iter(f"{SVG}circle") if c.get("class") == "epoch-point"]
    assert len(dots) == 4  # train and val, loss and accuracy
    full = parse_svg(plots.training_curves_svg(HISTORY)).iter(f"{SVG}circle")
    assert len([c for c in full if c.get("class") == "epoch-point"]) == 11  # one per value


def test_plot_titles_are_escaped():
    root = parse_svg(plots.confusion_matrix_svg(None, "<script>&"))
    assert root.find(f"{SVG}title").text == "<script>&"


def test_versions_page_side_by_side(client, auth, versions_case):
    auth.login("admin")
    page = client.get("/admin/versions").get_data(as_text=True)
    assert page.count("<svg") >= 4 + 3 + 3  # ROC and reliability twice, matrices, curves
    test_section = page[page.index('id="compare-test"') : page.index('id="compare-reviewed"')]
    rows = re.findall(r'data-version="(v\d)">(.*?)</tr>', test_section, re.S)
    accuracy = {
        name: re.search(r'class="accuracy">([^<]+)<', row).group(1)
        for name, row in rows
        if 'class="accuracy"' in row
    }
    assert accuracy == {"v2": "100.0%", "v1": "50.0%"}
    assert "not scored on these images yet" in test_section  # v3
    assert "4 of 5 images" in test_section
    assert "Roll back to v1" in page and "Activate v3" in page
    changes = re.search(r'href="(/admin/versions/v2/changes)">2</a>', page)
    assert changes, "v2 links to its two changed verdicts"
    listing = client.get(changes.group(1)).get_data(as_text=True)
    assert listing.count("<tr>") == 3  # header and two rows


def test_rollback_from_the_page(client, auth, versions_case, app):
    auth.login("admin")
    token = csrf_token(client, "/admin/versions")
    response = client.post("/admin/versions/v1/activate", data={"csrf_token": token})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(ModelVersion.name).where(ModelVersion.is_active)) == "v1"


def test_reviewers_cannot_see_versions(client, auth, versions_case):
    auth.login("reviewer")
    assert client.get("/admin/versions").status_code == 403
    assert client.get("/admin/versions/v2/changes").status_code == 403
