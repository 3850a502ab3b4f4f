"""``flask data import`` and ``flask data stats``, and imports that are killed half-way."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError

from tests.bad_inputs import BAD_FILES, image_bytes, kaggle_layout, write_files
from webapp.extensions import db
from webapp.models import Dataset, DatasetImage, Image, ImportRun
from webapp.services.importing.pixel_cache import PixelCache
from webapp.services.storage import instance_root, original_path, thumbnail_path

REPO = Path(__file__).resolve().parents[2]


def invoke(app, *args):
    return app.test_cli_runner().invoke(args=["data", *args])


def test_import_json_report_and_exit_status(app, tmp_path):
    files = dict(kaggle_layout(3), **{"data/Train/REAL/zero.jpg": b""})
    folder = write_files(tmp_path / "in", files)
    result = invoke(app, "import", str(folder), "--dataset", "cli", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"imported", "duplicates", "rejected", "by_label", "by_split"} <= set(report)
    assert report["imported"] == 12 and report["by_label"] == {"fake": 6, "real": 6}
    assert report["rejected"] == [{"path": "data/Train/REAL/zero.jpg", "reason": "zero-byte file"}]
    again = json.loads(invoke(app, "import", str(folder), "--dataset", "cli", "--json").stdout)
    assert (again["imported"], again["duplicates"]) == (0, 12)


def test_import_prints_summary_and_progress_on_stderr(app, tmp_path):
    folder = write_files(tmp_path / "in", kaggle_layout(5))
    result = invoke(app, "import", str(folder), "--label", "real")
    assert result.exit_code == 0
    assert "dataset 'in': 20 imported, 0 duplicates" in result.stdout
    assert "20/20" in result.stderr and "20/20" not in result.stdout


def test_exit_status_is_one_only_when_nothing_could_be_read(app, tmp_path):
    only_bad = write_files(tmp_path / "bad", {name: data for name, (data, _) in BAD_FILES.items()})
    result = invoke(app, "import", str(only_bad), "--json")
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)["rejected"]) == len(BAD_FILES)
    missing = invoke(app, "import", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1 and "no such file or folder" in missing.output
    assert invoke(app, "import", str(write_files(tmp_path / "empty", {})), "--json").exit_code == 1


def test_stats_command(app, tmp_path):
    files = {f"real/{i}.jpg": image_bytes(i, quality=95) for i in range(12)}
    files.update({f"fake/{i}.png": image_bytes(100 + i, "PNG") for i in range(12)})
    assert invoke(app, "import", str(write_files(tmp_path / "in", files)), "--json").exit_code == 0
    result = invoke(app, "stats", "--dataset", "in", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["classes"] == {"real": 12, "fake": 12}
    assert stats["categorical"]["format"]["fake"] == {"PNG": 12, "JPEG": 0}
    assert stats["channel_stats"]["mean"] is not None
    text = invoke(app, "stats", "--dataset", "in")
    assert "file format separates real from fake" in text.stdout
    assert invoke(app, "stats", "--dataset", "nope").exit_code == 1


# --- Interrupted imports --------------------------------------------------------------------


def _count_rows(engine) -> int:
    """Committed images, read on a connection of our own while the import runs."""
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count(Image.id))).scalar_one()
    except OperationalError:
        return 0


def _start_cli_import(folder: Path, instance: Path) -> subprocess.Popen:
    env = dict(
        os.environ,
        REALFAKE_INSTANCE=str(instance),
        REALFAKE_IMPORT_WORKERS="2",
        REALFAKE_CACHE_SIZE="32",
        REALFAKE_IMPORT_BATCH_ROWS="10",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "wsgi",
            "data",
            "import",
            str(folder),
            "--dataset",
            "big",
            "--json",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _interrupt_after_first_batch(process, database_url: str, signal_number) -> tuple:
    engine = create_engine(database_url)
    try:
        deadline = time.monotonic() + 120
        while _count_rows(engine) == 0 and process.poll() is None:
            assert time.monotonic() < deadline, "the import never committed a batch"
            time.sleep(0.01)
    finally:
        engine.dispose()
    if process.poll() is None:
        os.killpg(process.pid, signal_number)
    return process.communicate(timeout=60)


@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_import_is_completed_by_running_it_again(app, tmp_path, signal_number):
    files = {f"real/{i}.jpg": image_bytes(i, size=(48, 36)) for i in range(300)}
    files.update({f"fake/{i}.jpg": image_bytes(50_000 + i, size=(48, 36)) for i in range(300)})
    folder = write_files(tmp_path / "big", files)
    instance = Path(app.config["INSTANCE_PATH"])
    process = _start_cli_import(folder, instance)
    _, errors = _interrupt_after_first_batch(
        process, app.config["SQLALCHEMY_DATABASE_URI"], signal_number
    )
    assert process.returncode != 0, "the import finished before it could be interrupted"
    if signal_number == signal.SIGINT:  # stopped between two batches, and says so
        assert process.returncode == 130, errors.decode()[-2000:]
        assert "run the same command again" in errors.decode()
    with app.app_context():
        partial = db.session.scalar(select(func.count(Image.id)))
    assert 0 < partial < len(files)

    rerun = _start_cli_import(folder, instance)
    output, errors = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, errors.decode()[-2000:]
    report = json.loads(output)
    assert report["imported"] + report["duplicates"] == len(files)
    assert report["rejected"] == [] and report["imported"] >= len(files) - partial
    with app.app_context():
        _assert_store_consistent(app, {hashlib.sha256(d).hexdigest() for d in files.values()})
        states = db.session.scalars(select(ImportRun.state).order_by(ImportRun.id)).all()
    expected_first = "interrupted" if signal_number == signal.SIGKILL else "cancelled"
    assert states == [expected_first, "succeeded"]


def _assert_store_consistent(app, hashes: set[str]) -> None:
    images = db.session.scalars(select(Image).order_by(Image.id)).all()
    assert {image.sha256 for image in images} == hashes
    assert db.session.scalar(select(func.count(DatasetImage.id))) == len(hashes)
    for image in images[:: max(1, len(images) // 200)]:
        assert hashlib.sha256(original_path(image).read_bytes()).hexdigest() == image.sha256
    assert all(thumbnail_path(image.sha256).is_file() for image in images)
    cache = PixelCache(instance_root(), app.config["CACHE_SIZE"])
    assert cache.valid([i.id for i in images], [i.sha256 for i in images]).all()
    assert list((instance_root() / "tmp").iterdir()) == []


def test_overlong_dataset_name_is_refused_before_anything_is_stored(app, tmp_path):
    folder = write_files(tmp_path / "in", kaggle_layout(1))
    result = invoke(app, "import", str(folder), "--dataset", "d" * 201)
    assert result.exit_code == 1
    assert "201 characters; at most 200" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count(Image.id))) == 0
        assert db.session.scalar(select(func.count(Dataset.id))) == 0
