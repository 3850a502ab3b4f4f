"""Importing folders and archives: layouts, labels, splits, duplicates, links, warnings."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from model.images import resize_for_model
from tests.bad_inputs import (
    flat_layout,
    image_bytes,
    jpeg_with_exif,
    kaggle_layout,
    simple_layout,
    tar_with,
    write_files,
    zip_with,
)
from webapp.extensions import db
from webapp.models import Dataset, DatasetImage, Image, ImportRun
from webapp.services.importing.importer import (
    ImportRefused,
    SourceError,
    assign_split,
    import_path,
    layout_of,
)
from webapp.services.importing.pixels import load_pixels
from webapp.services.storage import instance_root, original_path, thumbnail_path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package(files: dict[str, bytes], tmp_path: Path, kind: str) -> Path:
    """The same files as a folder, a zip, a tar or a tar.gz."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        return write_files(tmp_path / "dataset", files)
    if kind == "zip":
        return zip_with(files, tmp_path / "dataset.zip")
    mode = "w:gz" if kind == "tar.gz" else "w"
    return tar_with(files, tmp_path / f"dataset.{kind}", mode)


def images_by_sha() -> dict[str, Image]:
    return {image.sha256: image for image in db.session.scalars(select(Image))}


@pytest.mark.parametrize("kind", ["folder", "zip", "tar", "tar.gz"])
def test_kaggle_layout_gives_labels_and_splits(app_ctx, tmp_path, kind):
    files = kaggle_layout(per_folder=5)
    report = import_path(package(files, tmp_path, kind), dataset="kaggle")
    assert report.imported == 20 and report.duplicates == 0 and report.rejected == []
    assert report.by_label == {"real": 10, "fake": 10}
    stored = images_by_sha()
    for path, data in files.items():
        image = stored[sha(data)]
        assert image.label == ("real" if "real" in path.lower() else "fake")
        if "/test/" in path.lower():
            assert image.split == "test"
        else:
            assert image.split in ("train", "val")
        assert image.original_path == path
        assert original_path(image).read_bytes() == data
        assert thumbnail_path(image.sha256).is_file()


@pytest.mark.parametrize("kind", ["folder", "zip", "tar.gz"])
def test_real_fake_folders_and_flat_folder(app_ctx, tmp_path, kind):
    labelled = import_path(package(simple_layout(4), tmp_path / "a", kind), dataset="simple")
    assert labelled.by_label == {"real": 4, "fake": 4}
    flat = import_path(package(flat_layout(5, seed=50), tmp_path / "b", kind), dataset="flat")
    assert flat.by_label == {"unknown": 5}
    assert sum(flat.by_split.values()) == 5


def test_label_option_overrides_layout(app_ctx, tmp_path):
    folder = write_files(tmp_path / "in", simple_layout(3))
    report = import_path(folder, dataset="forced", label="fake")
    assert report.by_label == {"fake": 6}
    assert {i.label_source for i in db.session.scalars(select(Image))} == {"import option"}


def test_layout_of_any_case_and_depth():
    assert layout_of("a/b/Train/REAL/x.jpg")[:2] == ("real", "train")
    assert layout_of("fake/x.png")[:2] == ("fake", None)
    assert layout_of("x.png")[:2] == (None, None)
    assert layout_of("Test/Fake/sub/x.png")[:2] == ("fake", "test")
    assert layout_of("really/fakes/x.png")[:2] == (None, None)


def test_split_is_deterministic_and_80_10_10():
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20_000)]
    first = [assign_split(h) for h in hashes]
    assert first == [assign_split(h) for h in reversed(hashes)][::-1]
    shares = Counter(first)
    assert abs(shares["train"] / 20_000 - 0.8) < 0.015
    assert abs(shares["val"] / 20_000 - 0.1) < 0.01
    assert abs(shares["test"] / 20_000 - 0.1) < 0.01
    from_train_folder = Counter(assign_split(h, "train") for h in hashes)
    assert set(from_train_folder) == {"train", "val"}
    assert abs(from_train_folder["val"] / 20_000 - 1 / 9) < 0.01
    assert {assign_split(h, "test") for h in hashes[:100]} == {"test"}
    assert {assign_split(h, None, evaluation_only=True) for h in hashes[:100]} == {"test"}


def test_split_is_stratified_per_class_and_repeatable(app, app_ctx, tmp_path):
    files = {f"real/{i}.jpg": image_bytes(i) for i in range(60)}
    files.update({f"fake/{i}.jpg": image_bytes(10_000 + i) for i in range(60)})
    import_path(write_files(tmp_path / "in", files), dataset="strat")
    for label in ("real", "fake"):
        splits = Counter(db.session.scalars(select(Image.split).where(Image.label == label)).all())
        assert splits["train"] >= 36  # 80% of 60 is 48; the hash rule is binomial
        assert splits["val"] + splits["test"] >= 4
    for image in db.session.scalars(select(Image)):
        assert image.split == assign_split(image.sha256)


def test_reimport_adds_nothing(app_ctx, tmp_path):
    folder = write_files(tmp_path / "in", kaggle_layout(5))
    first = import_path(folder, dataset="twice")
    counts = (
        db.session.scalar(select(func.count(Image.id))),
        db.session.scalar(select(func.count(DatasetImage.id))),
    )
    second = import_path(folder, dataset="twice")
    assert first.imported == 20
    assert (second.imported, second.duplicates, second.linked) == (0, 20, 0)
    assert counts == (
        db.session.scalar(select(func.count(Image.id))),
        db.session.scalar(select(func.count(DatasetImage.id))),
    )
    assert db.session.scalar(select(func.count(ImportRun.id))) == 2


def test_duplicates_inside_one_import_are_stored_once(app_ctx, tmp_path):
    data = image_bytes(3)
    folder = write_files(tmp_path / "in", {"real/a.jpg": data, "real/copy/b.jpg": data})
    report = import_path(folder, dataset="dups")
    assert (report.imported, report.duplicates) == (1, 1)
    image = db.session.scalar(select(Image))
    assert image.original_path == "real/a.jpg"
    blobs = list((instance_root() / "images").rglob("*.jpg"))
    assert len(blobs) == 1


def test_image_in_another_dataset_is_linked_not_copied(app_ctx, tmp_path):
    shared = {f"real/{i}.jpg": image_bytes(i) for i in range(4)}
    import_path(write_files(tmp_path / "a", shared), dataset="first")
    more = dict(shared, **{"real/new.jpg": image_bytes(77)})
    report = import_path(write_files(tmp_path / "b", more), dataset="second")
    assert (report.imported, report.duplicates, report.linked) == (1, 4, 4)
    assert db.session.scalar(select(func.count(Image.id))) == 5
    second = db.session.scalar(select(Dataset).where(Dataset.name == "second"))
    members = db.session.scalar(select(func.count()).where(DatasetImage.dataset_id == second.id))
    assert members == 5
    first_id = db.session.scalar(select(Dataset.id).where(Dataset.name == "first"))
    assert {
        i.dataset_id for i in db.session.scalars(select(Image)) if i.file_name != "new.jpg"
    } == {first_id}


def test_leakage_warned_both_ways(app_ctx, tmp_path):
    training = {f"real/{i}.jpg": image_bytes(i) for i in range(5)}
    import_path(write_files(tmp_path / "train", training), dataset="train-set")
    overlap = {f"real/{i}.jpg": image_bytes(i) for i in range(3, 8)}
    benchmark = import_path(
        write_files(tmp_path / "bench", overlap), dataset="benchmark", evaluation_only=True
    )
    assert benchmark.leakage == {"train-set": benchmark.leakage["train-set"]}
    assert len(benchmark.leakage["train-set"]) == 2
    assert any(
        w.startswith("leakage: 2 image(s) of this evaluation-only") for w in benchmark.warnings()
    )
    later = {f"fake/{i}.jpg": image_bytes(i) for i in range(6, 10)}
    again = import_path(write_files(tmp_path / "later", later), dataset="more-training")
    assert len(again.leakage["benchmark"]) == 2
    assert any("evaluation-only dataset(s) 'benchmark'" in w for w in again.warnings())
    clean = import_path(write_files(tmp_path / "clean", {"x/1.jpg": image_bytes(500)}))
    assert clean.warnings() == []


def test_same_content_with_both_labels_is_a_conflict(app_ctx, tmp_path):
    data = image_bytes(11)
    import_path(write_files(tmp_path / "a", {"real/x.jpg": data}), dataset="a")
    report = import_path(write_files(tmp_path / "b", {"FAKE/y.jpg": data}), dataset="b")
    image = db.session.scalar(select(Image))
    assert image.label == "real" and image.label_conflict is True
    assert len(report.conflicts) == 1
    assert report.warnings()[0].startswith("label conflict: 1 image(s)")
    assert report.as_json()["label_conflicts"] == 1


def test_unlabelled_image_gets_label_from_later_import(app_ctx, tmp_path):
    data = image_bytes(12)
    import_path(write_files(tmp_path / "a", {"x.jpg": data}), dataset="unsorted")
    report = import_path(write_files(tmp_path / "b", {"fake/x.jpg": data}), dataset="sorted")
    image = db.session.scalar(select(Image))
    assert image.label == "fake" and not image.label_conflict
    assert report.conflicts == {}


def test_metadata_quality_exif_mode_and_thumbnail(app_ctx, tmp_path):
    files = {
        "q75.jpg": image_bytes(1, quality=75),
        "q30.jpg": image_bytes(2, quality=30),
        "camera.jpg": jpeg_with_exif(3),
        "grey.png": image_bytes(4, "PNG", mode="L"),
        "alpha.png": image_bytes(5, "PNG", mode="RGBA"),
        "big.png": image_bytes(6, "PNG", size=(600, 400)),
        "anim.gif": image_bytes(7, "GIF"),
        "clear.png": image_bytes(8, "PNG", mode="P", transparency=0),
        "cmyk.jpg": image_bytes(9, mode="CMYK"),
    }
    report = import_path(write_files(tmp_path / "in", files), dataset="meta")
    assert report.imported == 9, report.rejected
    rows = {i.file_name: i for i in db.session.scalars(select(Image))}
    assert rows["q75.jpg"].jpeg_quality == 75
    assert rows["q30.jpg"].jpeg_quality == 30
    assert rows["grey.png"].jpeg_quality is None
    assert rows["camera.jpg"].has_exif and not rows["q75.jpg"].has_exif
    assert rows["camera.jpg"].exif_summary["make"] == "Canon"
    assert rows["camera.jpg"].exif_summary["model"] == "EOS 5D"
    assert (rows["grey.png"].mode, rows["alpha.png"].mode) == ("L", "RGBA")
    assert (rows["clear.png"].mode, rows["cmyk.jpg"].mode) == ("P", "CMYK")
    assert (rows["anim.gif"].format, rows["big.png"].format) == ("GIF", "PNG")
    assert (rows["big.png"].width, rows["big.png"].height) == (600, 400)
    assert rows["big.png"].bytes == len(files["big.png"])
    assert isinstance(rows["big.png"].created_at, datetime)
    with PILImage.open(thumbnail_path(rows["big.png"].sha256)) as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("JPEG", (256, 171))
    with PILImage.open(thumbnail_path(rows["grey.png"].sha256)) as thumbnail:
        assert thumbnail.size == (40, 32)


def test_cache_pixels_match_the_model_preprocessing(app, app_ctx, tmp_path):
    files = {f"real/{i}.png": image_bytes(i, "PNG", size=(50 + i, 30)) for i in range(20)}
    import_path(write_files(tmp_path / "in", files), dataset="pixels")
    images = db.session.scalars(select(Image).order_by(Image.id.desc())).all()
    pixels = load_pixels([i.id for i in images], app.config["CACHE_SIZE"])
    assert pixels.shape == (20, 32, 32, 3)
    for row, image in zip(pixels, images, strict=True):
        with PILImage.open(io.BytesIO(files[image.original_path])) as decoded:
            assert (row == resize_for_model(decoded, 32)).all()


def test_archive_entries_in_subfolder_and_dot_prefix(app_ctx, tmp_path):
    files = {f"./top/REAL/{i}.jpg": image_bytes(i) for i in range(3)}
    files["./top/.DS_Store"] = b"junk"
    files["__MACOSX/top/._0.jpg"] = b"junk"
    files["top/MANIFEST.json"] = b'{"sidecar": true}'
    files["top/REAL/notes.TXT"] = b"taken on a phone"
    report = import_path(tar_with(files, tmp_path / "x.tar.gz", "w:gz"), dataset="dots")
    assert (report.imported, report.skipped, report.rejected) == (3, 4, [])
    assert report.by_label == {"real": 3}


def test_evaluation_flag_must_match_existing_dataset(app_ctx, tmp_path):
    folder = write_files(tmp_path / "in", flat_layout(2))
    import_path(folder, dataset="bench", evaluation_only=True)
    with pytest.raises(ImportRefused, match="evaluation-only"):
        import_path(folder, dataset="bench")


def test_missing_path_is_a_source_error(app_ctx, tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        import_path(tmp_path / "nowhere")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SourceError, match="not a readable zip"):
        import_path(tmp_path / "broken.zip")


def test_import_from_a_thread_uses_worker_processes(app, tmp_path):
    """The job worker imports from a thread: the pool must start cleanly there too."""
    folder = write_files(tmp_path / "in", kaggle_layout(6, seed=300))
    results = {}

    def run():
        with app.app_context():
            results["report"] = import_path(folder, dataset="threaded", workers=2)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    assert results["report"].imported == 24


def test_report_json_has_the_documented_keys(app_ctx, tmp_path):
    report = import_path(write_files(tmp_path / "in", simple_layout(2)), dataset="keys")
    document = report.as_json()
    assert {"imported", "duplicates", "rejected", "by_label", "by_split"} <= set(document)
    assert document["dataset"] == "keys" and document["import_id"] == report.import_id
    run = db.session.get(ImportRun, report.import_id)
    assert run.state == "succeeded" and run.report["imported"] == 4


def _interrupted_import(folder, target, name: str, listener):
    """Import ``folder`` with ``listener`` on ``target``'s event ``name`` (it raises the Ctrl-C);
    check the Ctrl-C reaches the caller and the run is recorded as cancelled; return the raised
    exception's info."""
    event.listen(target, name, listener)
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            import_path(folder, dataset="ctrl-c")
    finally:
        event.remove(target, name, listener)
    db.session.remove()
    assert db.session.scalar(select(ImportRun.state)) == "cancelled"
    return raised


def test_ctrl_c_inside_a_database_call_is_recorded_and_a_rerun_completes(app_ctx, tmp_path):
    folder = write_files(tmp_path / "in", kaggle_layout(5))

    def interrupt(cursor, statement, parameters, context):
        if statement.startswith("INSERT INTO dataset_images"):
            raise KeyboardInterrupt  # as if Ctrl-C landed while the driver ran the insert

    # Inside the driver call SQLAlchemy invalidates the connection, which the import must
    # survive to record the cancellation.
    _interrupted_import(folder, db.engine, "do_executemany", interrupt)
    assert db.session.scalar(select(func.count(Image.id))) == 0  # the batch was rolled back
    report = import_path(folder, dataset="ctrl-c")
    assert (report.imported, report.duplicates) == (20, 0)


def test_ctrl_c_while_a_select_holds_its_rows_does_not_lock_out_the_record(app_ctx, tmp_path):
    """After a statement has stepped (a SELECT with rows to hand, inside the batch's write
    transaction), SQLite keeps the closed connection and its write lock while the interrupted
    cursor lives in the traceback: recording the run waited 30 s for that lock, then failed."""
    folder = write_files(tmp_path / "in", kaggle_layout(5))

    def interrupt(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("SELECT") and "FROM dataset_images" in statement:
            raise KeyboardInterrupt

    _interrupted_import(folder, db.engine, "after_cursor_execute", interrupt)
    report = import_path(folder, dataset="ctrl-c")
    assert report.imported + report.duplicates == 20 and report.rejected == []


def test_ctrl_c_behind_a_driver_error_is_recorded_as_cancelled(app_ctx, tmp_path):
    """psycopg answers a Ctrl-C inside a query with its own clean-up error, the KeyboardInterrupt
    only in the context: the run is still cancelled, and the caller sees the Ctrl-C."""
    folder = write_files(tmp_path / "in", kaggle_layout(5))

    def interrupt(cursor, statement, parameters, context):
        if statement.startswith("SELECT images.sha256"):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise RuntimeError("can't change 'autocommit' now") from None

    raised = _interrupted_import(folder, db.engine, "do_execute", interrupt)
    assert "autocommit" in str(raised.value.__cause__)
    report = import_path(folder, dataset="ctrl-c")
    assert (report.imported, report.duplicates) == (20, 0)


def test_ctrl_c_while_a_batch_commits_is_recorded(app_ctx, tmp_path):
    folder = write_files(tmp_path / "in", kaggle_layout(5))
    commits = []

    def interrupt(session):
        commits.append(session)
        if len(commits) == 3:  # dataset, run, then the first batch of images
            raise KeyboardInterrupt

    _interrupted_import(folder, Session, "after_commit", interrupt)
    report = import_path(folder, dataset="ctrl-c")
    assert report.imported + report.duplicates == 20 and report.rejected == []
