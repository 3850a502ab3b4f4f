"""Factories for the admin, report and API tests: rows made directly, files where storage says.

Images get a real original file and thumbnail (tiny PNG/JPEG made here) at the paths the
storage module gives, so reports and exports read them as they would after an import.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from tests.factories import make_dataset  # noqa: F401  (re-exported for admin tests)
from tests.helpers import make_user
from webapp.extensions import db
from webapp.models import (
    Dataset,
    DatasetImage,
    Image,
    ModelVersion,
    Prediction,
    ReviewDecision,
    User,
)


def picture_bytes(seed: int, size: int = 24, fmt: str = "PNG") -> bytes:
    """A small deterministic picture; different seeds give different bytes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_image(
    dataset: Dataset,
    label: str = "real",
    split: str = "test",
    seed: int = 0,
    file_name: str | None = None,
    thumbnail: bool = True,
    original: bool = True,
) -> Image:
    """An Image row in ``dataset`` with its original (PNG) and thumbnail (JPEG) on disk."""
    from webapp.services import storage

    data = picture_bytes(seed)
    sha256 = hashlib.sha256(data).hexdigest()
    image = Image(
        sha256=sha256,
        dataset_id=dataset.id,
        file_name=file_name or f"{label}_{seed}.png",
        original_path="",
        format="PNG",
        width=24,
        height=24,
        bytes=len(data),
        mode="RGB",
        label=label,
        label_source="folder",
        split=split,
    )
    db.session.add(image)
    db.session.flush()
    path = Path(storage.original_path(image))
    image.original_path = str(path)
    if original:
        _write(path, data)
    if thumbnail:
        _write(Path(storage.thumbnail_path(sha256)), picture_bytes(seed, 16, "JPEG"))
    link_image(image, dataset, label)
    return image


def link_image(image: Image, dataset: Dataset, label: str | None = None) -> None:
    """Make ``image`` a member of ``dataset`` too."""
    db.session.add(
        DatasetImage(
            dataset_id=dataset.id,
            image_id=image.id,
            original_path=image.original_path,
            label=label or image.label,
        )
    )
    db.session.commit()


def make_version(
    name: str, active: bool = False, history: list | None = None, parent=None
) -> ModelVersion:
    """A ModelVersion row (no checkpoint file: these tests read stored predictions only)."""
    version = ModelVersion(
        name=name,
        checkpoint_path=f"/nonexistent/{name}.pt",
        image_size=32,
        init_weights="random",
        is_active=active,
        history=history,
        parent_id=parent.id if parent else None,
        metrics={},
    )
    db.session.add(version)
    db.session.commit()
    return version


def make_prediction(
    image: Image, version: ModelVersion, p_fake: float, ood_score: float | None = None
) -> Prediction:
    """A stored prediction; the verdict follows p_fake >= 0.5 as scoring does."""
    prediction = Prediction(
        image_id=image.id,
        model_version_id=version.id,
        p_fake=p_fake,
        p_fake_raw=p_fake,
        verdict="fake" if p_fake >= 0.5 else "real",
        ood_score=ood_score,
    )
    db.session.add(prediction)
    db.session.commit()
    return prediction


def make_decision(
    image: Image,
    user: User | str,
    choice: str,
    version: ModelVersion | None = None,
    note: str = "",
    reverts: ReviewDecision | None = None,
) -> ReviewDecision:
    """A reviewer's decision on an image, made while ``version``'s verdict was shown."""
    if isinstance(user, str):
        user = make_user(user)
    decision = ReviewDecision(
        image_id=image.id,
        user_id=user.id,
        model_version_id=version.id if version else None,
        label_before=image.label,
        choice=choice,
        note=note,
        reverts_id=reverts.id if reverts else None,
    )
    db.session.add(decision)
    db.session.commit()
    return decision
