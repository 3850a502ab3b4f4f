"""The real thing: the 40,000-image CIFAKE sample from ``../shared/datasets`` (skipped when the
checkout has no ``../shared`` beside it)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Image
from webapp.services.importing.importer import import_path
from webapp.services.importing.pixels import load_pixels
from webapp.services.training.data_audit import shortcut_findings

CIFAKE = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "cifake-train-40k.zip"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CIFAKE.is_file(), reason=f"{CIFAKE} is not here"),
]


def test_cifake_imports_every_file_and_twice_adds_nothing(app_ctx):
    with zipfile.ZipFile(CIFAKE) as archive:
        files = [info for info in archive.infolist() if not info.is_dir()]
    first = import_path(CIFAKE, dataset="cifake", cache_size=32)
    assert first.rejected == []
    assert first.imported + first.duplicates == len(files) == 40_000
    assert first.duplicates > 0  # the sample holds exact duplicates
    assert sum(first.by_label.values()) == first.imported
    assert set(first.by_label) == {"real", "fake"}
    assert set(first.by_split) == {"train", "val"}  # everything sits under train/
    assert db.session.scalar(select(func.count(Image.id))) == first.imported

    second = import_path(CIFAKE, dataset="cifake", cache_size=32)
    assert (second.imported, second.duplicates, second.rejected) == (0, 40_000, [])
    assert db.session.scalar(select(func.count(Image.id))) == first.imported

    ids = db.session.scalars(select(Image.id).order_by(Image.id).limit(64)).all()
    assert load_pixels(ids, 32).shape == (64, 32, 32, 3)
    findings = {f["group"]: f for f in shortcut_findings()}
    assert not findings["file format"]["warning"] and not findings["image size"]["warning"]
