"""Misclassification reports on a hand-built case, in CSV, JSON and HTML, by CLI and by job."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.factories import (
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from webapp.jobs import submit, wait_for
from webapp.models import JobState
from webapp.services.records.labels import effective_labels
from webapp.services.reporting import reports


@pytest.fixture
def case(app_ctx):
    """Eleven images, two versions (v2 active), decisions with overrides, an undo and a skip.

    Where reviewers decided, the import label already agrees with them, so the expected rows
    hold whether effective labels come from reviews or from imports.
    """
    alpha, beta = make_dataset("alpha"), make_dataset("beta")
    v1 = make_version("v1", active=False)
    v2 = make_version("v2", active=True, parent=v1)
    images = {}

    def image(key, label, p_v2, split="test", dataset=alpha, p_v1=None, ood=None, seed=None):
        made = make_seeded_image(dataset, label, split, seed=seed or len(images) + 1)
        if p_v2 is not None:
            make_prediction(made, v2, p_v2, ood_score=ood, audit_key=0.0)
        if p_v1 is not None:
            make_prediction(made, v1, p_v1, ood_score=None, audit_key=0.0)
        images[key] = made
        return made

    image("a", "fake", 0.2, p_v1=0.3, ood=0.97)  # wrong
    image("b", "real", 0.1)  # right
    image("c", "fake", 0.3)  # wrong, and a reviewer overrode v2
    make_decision(images["c"], "ann", "fake", v2, note="checkerboard in the sky")
    image("d", "real", 0.4, p_v1=0.8)  # right now; a reviewer overrode v1's FAKE
    make_decision(images["d"], "bob", "real", v1, note="just sensor noise")
    image("e", "unknown", 0.9)  # no label: never "wrong"
    image("f", "real", 0.7)  # wrong; the override on it was undone
    undone = make_decision(images["f"], "ann", "fake", v2)
    make_decision(images["f"], "ann", "undo", v2, reverts=undone)
    image("g", "fake", 0.95, split="train")  # right
    image("h", "real", 0.6, split="val")  # wrong
    image("i", "real", 0.9, dataset=beta)  # wrong, other dataset
    image("j", "real", 0.2)  # right; skipped by a reviewer
    make_decision(images["j"], "ann", "skip", v2)
    image("k", "fake", None)  # not scored by v2
    return {"images": images, "v1": v1, "v2": v2}


def ids(case, *keys):
    return [case["images"][key].id for key in keys]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_rows_for_hand_built_case(case, tmp_path):
    path = tmp_path / "report.csv"
    summary = reports.write_misclassified(path, "csv")
    rows = read_csv(path)
    assert list(rows[0]) == list(reports.COLUMNS)
    assert [int(row["image_id"]) for row in rows] == ids(case, "a", "c", "d", "f", "h", "i")
    by_id = {int(row["image_id"]): row for row in rows}
    a, c, d, f = (by_id[i] for i in ids(case, "a", "c", "d", "f"))
    assert (a["label"], a["label_source"], a["verdict"]) == ("fake", "import", "real")
    assert float(a["confidence"]) == pytest.approx(0.8)
    assert float(a["p_fake"]) == pytest.approx(0.2)
    assert float(a["ood_score"]) == pytest.approx(0.97)
    assert a["reasons"] == "misclassified" and a["decisions"] == ""
    assert c["reasons"] == "misclassified;override" and c["label_source"] == "review"
    assert "ann: fake (checkerboard in the sky) [shown v2 real" in c["decisions"]
    assert d["reasons"] == "override" and d["verdict"] == "real"
    assert "bob: real (just sensor noise) [shown v1 fake" in d["decisions"]
    assert f["reasons"] == "misclassified" and f["decisions"] == ""  # the undone one is gone
    assert by_id[ids(case, "i")[0]]["dataset"] == "beta"
    assert summary["version"] == "v2"
    assert (summary["rows"], summary["misclassified"], summary["overrides"]) == (6, 5, 2)


def test_json_rows_and_decisions(case, tmp_path):
    path = tmp_path / "report.json"
    reports.write_misclassified(path, "json", dataset_name="alpha")
    document = json.loads(path.read_text())
    assert document["version"] == "v2" and document["dataset"] == "alpha"
    assert [row["image_id"] for row in document["rows"]] == ids(case, "a", "c", "d", "f", "h")
    assert set(document["rows"][0]) == set(reports.COLUMNS)
    c = document["rows"][1]
    assert c["reasons"] == ["misclassified", "override"]
    (decision,) = c["decisions"]
    assert decision["reviewer"] == "ann" and decision["choice"] == "fake"
    assert decision["note"] == "checkerboard in the sky"
    assert decision["verdict_shown"] == "real" and decision["version"] == "v2"
    assert decision["at"].endswith("Z")
    assert c["confidence"] == pytest.approx(0.7)
    assert document["summary"]["rows"] == 5


class ReportPage(HTMLParser):
    """Collects what the HTML report loads and shows."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self.rows, self.external, self.ids = [], 0, [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "tr" and attrs.get("id", "").startswith("image-"):
            self.rows += 1
        if tag in ("link", "script", "iframe") or (
            (attrs.get("src") or attrs.get("href") or "").startswith(("http:", "https:", "//"))
        ):
            self.external.append((tag, attrs))
        if attrs.get("id"):
            self.ids[attrs["id"]] = tag


def test_html_report_is_self_contained_with_thumbnails(case, tmp_path):
    path = tmp_path / "report.html"
    reports.write_misclassified(path, "html")
    text = path.read_text()
    page = ReportPage()
    page.feed(text)
    assert page.rows == 6
    assert len(page.images) == 6
    assert all(src.startswith("data:image/jpeg;base64,") for src in page.images)
    assert page.external == []
    # v2 on the nine labelled images it scored: b, d, g, j right; a, c, f, h, i wrong.
    assert '<div class="kpi" id="metric-accuracy">44.4%</div>' in text
    assert "checkerboard in the sky" in text
    assert "<svg" in text  # confusion matrix and reliability diagram, inline


def test_html_thumbnail_falls_back_to_original_then_to_nothing(app_ctx, tmp_path):
    dataset = make_dataset("gamma")
    version = make_version("v1", active=True)
    no_thumb = make_seeded_image(dataset, "real", seed=50, thumbnail=False)
    nothing = make_seeded_image(dataset, "real", seed=51, thumbnail=False, original=False)
    make_prediction(no_thumb, version, 0.9, ood_score=None, audit_key=0.0)
    make_prediction(nothing, version, 0.9, ood_score=None, audit_key=0.0)
    path = tmp_path / "report.html"
    reports.write_misclassified(path, "html")
    page = ReportPage()
    page.feed(path.read_text())
    assert page.rows == 2
    assert len(page.images) == 1 and page.images[0].startswith("data:image/jpeg;base64,")
    assert "no image" in path.read_text()


def test_filters_by_dataset_and_split(case, tmp_path):
    path = tmp_path / "r.csv"
    reports.write_misclassified(path, "csv", dataset_name="alpha", split="test")
    assert [int(r["image_id"]) for r in read_csv(path)] == ids(case, "a", "c", "d", "f")
    reports.write_misclassified(path, "csv", split="val")
    assert [int(r["image_id"]) for r in read_csv(path)] == ids(case, "h")
    reports.write_misclassified(path, "csv", dataset_name="beta")
    assert [(int(r["image_id"]), r["dataset"]) for r in read_csv(path)] == [
        (ids(case, "i")[0], "beta")
    ]


def test_other_version_uses_its_own_verdicts(case, tmp_path):
    path = tmp_path / "r.json"
    reports.write_misclassified(path, "json", version_name="v1")
    rows = {row["image_id"]: row for row in json.loads(path.read_text())["rows"]}
    a, c, d = ids(case, "a", "c", "d")
    assert set(rows) == {a, c, d}
    assert rows[a]["reasons"] == ["misclassified"]
    assert rows[d]["reasons"] == ["misclassified", "override"] and rows[d]["verdict"] == "fake"
    assert rows[c]["verdict"] is None and rows[c]["reasons"] == ["override"]


def test_rows_follow_effective_labels(case, tmp_path):
    """A reviewer contradicts an import label: the report judges by the effective label."""
    images = case["images"]
    make_decision(images["b"], "ann", "fake", case["v2"], note="upscaled")
    make_decision(images["b"], "bob", "fake", case["v2"])
    path = tmp_path / "r.csv"
    reports.write_misclassified(path, "csv")
    listed = {int(row["image_id"]) for row in read_csv(path)}
    labels = effective_labels([images["b"].id])
    assert images["b"].id in listed  # an override of v2's REAL, whatever the label
    row = next(r for r in read_csv(path) if int(r["image_id"]) == images["b"].id)
    assert row["label"] == labels[images["b"].id]
    expected = "misclassified;override" if row["label"] == "fake" else "override"
    assert row["reasons"] == expected


def test_pages_of_any_size_give_the_same_rows(case, tmp_path, monkeypatch):
    whole, paged = tmp_path / "whole.json", tmp_path / "paged.json"
    reports.write_misclassified(whole, "json")
    monkeypatch.setattr(reports, "CHUNK", 2)
    reports.write_misclassified(paged, "json")
    assert json.loads(paged.read_text()) == json.loads(whole.read_text())


def test_failed_write_leaves_no_file(case, tmp_path):
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "r.csv"

    def stop(done, total):
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        reports.write_misclassified(path, "csv", progress=stop)
    assert list(path.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version_name": "v9"}, "unknown model version 'v9'"),
        ({"dataset_name": "nope"}, "unknown dataset 'nope'"),
        ({"split": "dev"}, "unknown split 'dev'"),
    ],
)
def test_unknown_names_are_refused(case, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        reports.write_misclassified(tmp_path / "r.csv", "csv", **kwargs)


def test_cli_writes_each_format(case, app, tmp_path):
    runner = app.test_cli_runner()
    for fmt in reports.FORMATS:
        output = tmp_path / f"r.{fmt}"
        result = runner.invoke(
            args=["report", "misclassified", "--format", fmt, "-o", str(output), "--split", "test"]
        )
        assert result.exit_code == 0, result.output
        assert "wrote 5 rows" in result.output
        assert output.stat().st_size > 0
    result = runner.invoke(
        args=["report", "misclassified", "--format", "csv", "-o", str(tmp_path / "x.csv")]
        + ["--version", "v7"]
    )
    assert result.exit_code == 1 and "unknown model version 'v7'" in result.output


def test_report_job_writes_into_instance_reports(case, app, worker):
    from webapp.services.reporting.report_jobs import report_file, start_report

    job = start_report({"report": "misclassified", "format": "json", "split": "val"}, None)
    assert job.params["version"] == "v2"  # pinned when asked
    done = wait_for(job.id, timeout=60, poll=0.05)
    assert done.state == JobState.SUCCEEDED, done.error
    path = report_file(done)
    assert path.parent == Path(app.instance_path) / "reports"
    assert [row["image_id"] for row in json.loads(path.read_text())["rows"]] == ids(case, "h")
    assert done.result["rows"] == 1 and done.result["bytes"] == path.stat().st_size


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"report": "misclassified", "format": "zip"}, "format must be one of csv, json, html"),
        ({"report": "labels", "format": "html"}, "format must be one of csv, imagefolder"),
        ({"report": "everything", "format": "csv"}, "unknown report 'everything'"),
        ({"report": "labels", "format": "csv", "dataset": "nope"}, "unknown dataset 'nope'"),
    ],
)
def test_report_job_refuses_bad_parameters(case, params, message):
    from webapp.services.reporting.report_jobs import start_report

    with pytest.raises(ValueError, match=message):
        start_report(params, None)


def test_report_job_can_fail_cleanly(case, app, worker):
    """A job whose version vanished fails with the reason and leaves no file."""
    job = submit("report", {"report": "misclassified", "format": "csv", "version": "gone"})
    done = wait_for(job.id, timeout=60, poll=0.05)
    assert done.state == JobState.FAILED and "unknown model version 'gone'" in done.error
    assert list((Path(app.instance_path) / "reports").glob("*")) == []
