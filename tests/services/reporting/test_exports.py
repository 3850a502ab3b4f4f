"""Labels export: CSV of effective labels and an ImageFolder tree torchvision can load."""

from __future__ import annotations

import csv
import os
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from torchvision.datasets import ImageFolder

from tests.factories import make_dataset, make_decision, make_seeded_image, make_version
from webapp.jobs import wait_for
from webapp.models import JobState
from webapp.services.records.labels import effective_labels
from webapp.services.reporting import exports


@pytest.fixture
def labelled(app_ctx):
    """Three real, two fake, one unknown and one unsure image; one real image elsewhere."""
    main, other = make_dataset("main"), make_dataset("other")
    version = make_version("v1", active=True)
    images = [make_seeded_image(main, "real", "train", seed=i) for i in range(3)]
    images += [make_seeded_image(main, "fake", "train", seed=10 + i) for i in range(2)]
    images.append(make_seeded_image(main, "unknown", "test", seed=20))
    unsure = make_seeded_image(main, "real", "test", seed=21, file_name="odd name!.png")
    make_decision(unsure, "ann", "unsure", version)
    images.append(unsure)
    make_decision(images[3], "ann", "fake", version, note="agrees with import")
    images.append(make_seeded_image(other, "real", "val", seed=30))
    return images


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_labels_csv_has_every_image_with_its_effective_label(labelled, tmp_path):
    path = tmp_path / "labels.csv"
    summary = exports.write_labels_csv(path)
    rows = read_rows(path)
    assert list(rows[0]) == list(exports.LABEL_COLUMNS)
    assert [int(r["image_id"]) for r in rows] == [image.id for image in labelled]
    expected = effective_labels([image.id for image in labelled])
    assert {int(r["image_id"]): r["label"] for r in rows} == expected
    by_id = {int(r["image_id"]): r for r in rows}
    assert by_id[labelled[3].id]["source"] == "review"  # a reviewer chose its label
    assert by_id[labelled[0].id]["source"] == "import"
    assert by_id[labelled[0].id]["sha256"] == labelled[0].sha256
    assert by_id[labelled[-1].id]["dataset"] == "other"
    assert summary["rows"] == 8


def test_labels_csv_filters_by_dataset_and_split(labelled, tmp_path):
    path = tmp_path / "labels.csv"
    exports.write_labels_csv(path, dataset_name="main", split="train")
    assert [int(r["image_id"]) for r in read_rows(path)] == [i.id for i in labelled[:5]]
    with pytest.raises(ValueError, match="unknown dataset 'missing'"):
        exports.write_labels_csv(path, dataset_name="missing")


def class_counts(folder: ImageFolder) -> Counter:
    return Counter(folder.classes[target] for _, target in folder.samples)


def expected_counts(images) -> Counter:
    labels = effective_labels([image.id for image in images])
    return Counter(labels[i.id].upper() for i in images if labels[i.id] in ("real", "fake"))


def test_imagefolder_tree_loads_with_torchvision(labelled, tmp_path):
    root = tmp_path / "tree"
    summary = exports.write_imagefolder(root, dataset_name="main")
    folder = ImageFolder(str(root))
    assert folder.classes == ["FAKE", "REAL"]
    assert class_counts(folder) == expected_counts(labelled[:7])
    picture, target = folder[0]
    assert picture.size == (24, 24) and folder.classes[target] == "FAKE"
    assert summary["linked"] + summary["copied"] == len(folder)
    assert summary["missing"] == 0
    first = Path(folder.samples[0][0])
    assert first.name.startswith(f"{labelled[3].id}-fake_")
    if summary["linked"]:  # hard links share the stored original's inode
        from webapp.services import storage

        assert first.stat().st_ino == os.stat(storage.original_path(labelled[3])).st_ino


def test_imagefolder_refuses_a_folder_with_files(labelled, tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        exports.write_imagefolder(root)
    assert (root / "keep.txt").read_text() == "mine"


def test_missing_originals_are_counted_not_fatal(app_ctx, tmp_path):
    dataset = make_dataset("d")
    present = make_seeded_image(dataset, "real", seed=1)
    absent = make_seeded_image(dataset, "fake", seed=2, original=False)
    summary = exports.write_imagefolder(tmp_path / "tree")
    assert (summary["real"], summary["fake"], summary["missing"]) == (1, 0, 1)
    assert summary["missing_examples"] == [absent.id]
    assert [p.name for p in (tmp_path / "tree" / "REAL").iterdir()] == [f"{present.id}-real_1.png"]


def test_imagefolder_zip_by_job_extracts_to_a_loadable_tree(labelled, app, worker, tmp_path):
    from webapp.services.reporting.report_jobs import report_file, start_report

    job = start_report({"report": "labels", "format": "imagefolder"}, None)
    done = wait_for(job.id, timeout=60, poll=0.05)
    assert done.state == JobState.SUCCEEDED, done.error
    path = report_file(done)
    assert path.suffix == ".zip"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "unzipped")
    folder = ImageFolder(str(tmp_path / "unzipped"))
    assert class_counts(folder) == expected_counts(labelled)


def test_labels_cli_both_formats(labelled, app, tmp_path):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["report", "labels", "--format", "csv", "-o", str(tmp_path / "l.csv")]
    )
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "l.csv")) == 8
    result = runner.invoke(
        args=["report", "labels", "--format", "imagefolder", "-o", str(tmp_path / "tree")]
        + ["--split", "train"]
    )
    assert result.exit_code == 0, result.output
    assert class_counts(ImageFolder(str(tmp_path / "tree"))) == expected_counts(labelled[:5])
    result = runner.invoke(
        args=["report", "labels", "--format", "imagefolder", "-o", str(tmp_path / "tree")]
    )
    assert result.exit_code == 1 and "not an empty folder" in result.output


def test_unsure_images_stay_out_of_the_tree(labelled, tmp_path):
    unsure = labelled[6]
    label = effective_labels([unsure.id])[unsure.id]
    exports.write_imagefolder(tmp_path / "tree", split="test")
    names = [p.name for p in (tmp_path / "tree").rglob("*.png")]
    in_tree = any(name.startswith(f"{unsure.id}-") for name in names)
    assert in_tree == (label in ("real", "fake"))


def test_tree_names_are_unique_and_safe(labelled):
    odd = labelled[6]
    assert exports.tree_name(odd, Path("/x/abc.PNG")) == f"{odd.id}-odd_name.png"
    odd.file_name = "../../etc/passwd"
    assert exports.tree_name(odd, Path("/x/abc")) == f"{odd.id}-passwd.png"
