"""Imports account for every file, failed or empty imports leave no dataset, and deleting a
dataset takes its images, predictions and decisions (copied to the audit trail first)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.bad_inputs import image_bytes, write_files, zip_with
from tests.factories import (
    link_image,
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from webapp.extensions import db
from webapp.models import AuditEvent, Dataset, Image, ImportRun, Prediction, ReviewDecision
from webapp.services.admin import dataset_admin
from webapp.services.importing.importer import SourceError, import_path
from webapp.services.records import audit_trail


def _datasets() -> set[str]:
    return set(db.session.scalars(select(Dataset.name)))


def test_every_file_is_accounted_for(app_ctx, tmp_path):
    folder = write_files(
        tmp_path / "mixed",
        {
            "REAL/a.jpg": image_bytes(1),
            "REAL/a-copy.jpg": image_bytes(1),
            "FAKE/b.jpg": image_bytes(2),
            "FAKE/broken.jpg": b"\xff\xd8\xff\xe0 cut",
            "notes.txt": b"taken on holiday",
        },
    )
    report = import_path(folder, dataset="mixed").as_json()
    assert report["imported"] == 2 and report["error"] == ""
    assert len(report["duplicate_files"]) == 1
    assert report["duplicate_files"][0] in ("REAL/a.jpg", "REAL/a-copy.jpg")
    assert [r["path"] for r in report["rejected"]] == ["FAKE/broken.jpg"]
    assert report["skipped_files"] == [
        {"path": "notes.txt", "reason": "a .txt document, not an image"}
    ]


def test_a_single_text_file_fails_and_leaves_no_dataset(app_ctx, tmp_path):
    folder = write_files(tmp_path / "upload", {"notes.txt": b"not an image"})
    report = import_path(folder, dataset="notes", source_name="notes.txt")
    reason = "a .txt document, not an image"
    assert report.error == f"no image was imported: notes.txt (skipped: {reason})"
    assert "notes" not in _datasets()
    run = db.session.scalar(select(ImportRun))
    assert (run.state, run.dataset_id, run.dataset_name) == ("failed", None, "notes")
    assert run.report["error"] == report.error


def test_an_empty_archive_fails_and_leaves_no_dataset(app_ctx, tmp_path):
    archive = zip_with({}, tmp_path / "empty.zip")
    report = import_path(archive, source_name="empty.zip")
    assert report.error.startswith("no image was imported: the upload holds no files")
    assert _datasets() == set()


def test_a_zero_byte_archive_fails_without_a_server_path(app_ctx, tmp_path):
    archive = tmp_path / "deep" / "server" / "zero.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    with pytest.raises(SourceError) as raised:
        import_path(archive, source_name="zero.zip")
    assert raised.value.reason == "not a readable zip archive: the file is empty (0 bytes)"
    run = db.session.scalar(select(ImportRun))
    assert run.state == "failed" and run.dataset_id is None
    assert str(tmp_path) not in run.report["error"] and run.report["error"].startswith("zero.zip:")
    assert _datasets() == set()


def test_an_import_of_only_duplicates_keeps_its_dataset(app_ctx, tmp_path):
    folder = write_files(tmp_path / "one", {"REAL/a.jpg": image_bytes(1)})
    import_path(folder, dataset="first")
    report = import_path(folder, dataset="second")
    assert report.error == "" and report.duplicates == 1
    assert _datasets() == {"first", "second"}


@pytest.fixture
def two_datasets(app_ctx):
    doomed, other = make_dataset("doomed"), make_dataset("other")
    version = make_version("v1", active=True)
    only_here = [make_seeded_image(doomed, "real", seed=seed) for seed in range(3)]
    shared = make_seeded_image(doomed, "fake", seed=10)
    link_image(shared, other)
    for image in [*only_here, shared]:
        make_prediction(image, version, 0.3, ood_score=None, audit_key=0.0)
    decision = make_decision(only_here[0], "ann", "fake", version, note="a render")
    make_decision(only_here[0], "ann", "undo", version, reverts=decision)
    make_decision(shared, "bob", "fake", version)
    return doomed, only_here, shared


def test_deletion_counts_say_what_goes(two_datasets):
    doomed, _, _ = two_datasets
    counts = dataset_admin.deletion_counts(doomed)
    assert (counts.images, counts.shared, counts.predictions, counts.decisions) == (3, 1, 3, 2)


def test_delete_dataset_keeps_shared_images_and_the_decisions_in_the_trail(two_datasets):
    doomed, only_here, shared = two_datasets
    sha = only_here[0].sha256
    dataset_admin.delete_dataset(doomed, user=None)
    assert _datasets() == {"other"}
    assert db.session.scalar(select(func.count(Image.id))) == 1
    assert db.session.get(Image, shared.id).dataset_id != doomed.id
    assert db.session.scalar(select(func.count(Prediction.id))) == 1
    assert db.session.scalar(select(func.count(ReviewDecision.id))) == 1  # the shared image's
    copied = db.session.scalars(
        select(AuditEvent).where(AuditEvent.image_sha256 == sha).order_by(AuditEvent.created_at)
    ).all()
    assert [e.action for e in copied] == ["decision", "undo"]
    assert copied[0].username == "ann" and "a render" in copied[0].summary
    entries = audit_trail.trail(audit_trail.TrailFilter(action="dataset-deleted"))
    assert entries[0]["target"] == "doomed" and "3 images" in entries[0]["summary"]


def test_archived_dataset_records_and_restores(two_datasets):
    doomed, _, _ = two_datasets
    dataset_admin.set_archived(doomed, True, user=None)
    assert doomed.archived_at is not None
    dataset_admin.set_archived(doomed, False, user=None)
    actions = [e["action"] for e in audit_trail.trail()]
    assert actions[:2] == ["dataset-restored", "dataset-archived"]


def test_an_archived_dataset_is_not_trained_on(app_ctx):
    from webapp.services.training.trainset import select_training_set

    kept, archived = make_dataset("kept"), make_dataset("old")
    for seed in range(4):
        make_seeded_image(kept, "real" if seed % 2 else "fake", "train", seed=seed)
        make_seeded_image(archived, "real" if seed % 2 else "fake", "train", seed=100 + seed)
    assert len(select_training_set(None).train) == 8
    dataset_admin.set_archived(archived, True, user=None)
    assert len(select_training_set(None).train) == 4


def test_the_cli_names_skipped_files_and_the_failure(app, tmp_path):
    folder = write_files(tmp_path / "notes", {"notes.txt": b"hello"})
    result = app.test_cli_runner().invoke(args=["data", "import", str(folder)])
    assert result.exit_code == 1
    assert "skipped notes.txt: a .txt document, not an image" in result.stdout
    assert "failed: no image was imported: notes.txt" in result.stderr


def test_an_archived_dataset_leaves_the_reviewers_filter(app, auth, client):
    with app.app_context():
        make_dataset("current")
        dataset_admin.set_archived(make_dataset("old"), True, user=None)
    auth.login("reviewer")
    page = client.get("/review/").get_data(as_text=True)
    assert '<option value="current"' in page and '<option value="old"' not in page


def _rows_of(image_ids: list[int]) -> dict[str, int]:
    """Rows that name one of ``image_ids``, per table with an image column."""
    counts = {}
    for table in db.metadata.sorted_tables:
        column = table.c.get("image_id") if table.name != "images" else table.c.id
        if column is not None:
            statement = select(func.count()).select_from(table).where(column.in_(image_ids))
            counts[table.name] = db.session.scalar(statement)
    return counts


def _derived_files(version, image_ids):
    """Stored features, out-of-fold scores and heatmaps of ``image_ids``, written where scoring,
    out-of-fold training and the heatmap job write them."""
    import numpy as np

    from webapp.services.review import heatmaps
    from webapp.services.training import oof_training, scoring

    ids = np.asarray(image_ids)
    features = np.arange(len(ids) * 4, dtype=np.float32).reshape(len(ids), 4)
    np.savez(scoring.features_path(version), ids=ids, features=features)
    np.savez(oof_training.oof_path(version), ids=ids, p_fake=np.linspace(0, 1, len(ids)))
    for image_id in image_ids:
        path = heatmaps.cache_path(image_id, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")


def test_deleting_a_dataset_leaves_nothing_of_its_images(app_ctx, tmp_path):
    import numpy as np

    from webapp.services.importing.pixels import cache_for
    from webapp.services.review import heatmaps
    from webapp.services.training import oof_training, scoring

    shared = image_bytes(99)
    doomed_files = {f"real/{i}.jpg": image_bytes(i) for i in range(4)} | {"real/s.jpg": shared}
    import_path(write_files(tmp_path / "doomed", doomed_files), dataset="doomed")
    kept_files = {f"fake/{i}.jpg": image_bytes(50 + i) for i in range(3)} | {"fake/s.jpg": shared}
    import_path(write_files(tmp_path / "kept", kept_files), dataset="kept")
    dataset = db.session.scalar(select(Dataset).where(Dataset.name == "doomed"))
    images = db.session.scalars(select(Image).order_by(Image.id)).all()
    version = make_version("v1", active=True)
    for image in images:
        make_prediction(image, version, 0.4)
    make_decision(images[0], "ann", "fake", version)
    _derived_files(version, [image.id for image in images])
    gone = dataset_admin._only_here(dataset.id)
    survivors = [image.id for image in images if image.id not in gone]
    cache = cache_for(app_ctx.config["CACHE_SIZE"])
    hashes = {image.id: image.sha256 for image in images}
    assert len(gone) == 4 and cache.valid(gone, [hashes[i] for i in gone]).all()

    dataset_admin.delete_dataset(dataset, user=None)

    assert set(_rows_of(gone).values()) == {0}
    assert db.session.scalar(select(func.count()).where(Dataset.name == "doomed")) == 0
    assert not cache.valid(gone, [hashes[i] for i in gone]).any()
    assert not cache.array()[gone].any()  # the pixels themselves are gone
    assert cache.valid(survivors, [hashes[i] for i in survivors]).all()
    assert cache.read(survivors).any()
    for path in (scoring.features_path(version), oof_training.oof_path(version)):
        with np.load(path) as data:
            assert sorted(data["ids"].tolist()) == survivors
            assert all(len(data[key]) == len(survivors) for key in data.files)
    heatmap_ids = sorted(int(p.stem) for p in heatmaps.cache_folder(version).iterdir())
    assert heatmap_ids == survivors
    assert _rows_of(survivors)["predictions"] == len(survivors) == 4
