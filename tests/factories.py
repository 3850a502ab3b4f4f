"""Factories for test data: datasets, images with real files, versions, predictions, decisions.

Rows are made directly (the importer and the scoring jobs are other parts); each image is a real
tiny picture written where storage serves originals and thumbnails from. :func:`make_image`
gives each call a new picture; :func:`make_seeded_image` the same picture for the same seed
(the admin, report and API tests name their images by seed).
"""

from __future__ import annotations

import hashlib
import io
import itertools
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select, update

from tests.helpers import make_image_bytes, make_user
from webapp.extensions import db
from webapp.models import (
    Dataset,
    DatasetImage,
    Image,
    ModelVersion,
    Prediction,
    ReviewDecision,
    User,
    utcnow,
)
from webapp.services.storage import original_path, thumbnail_path

_seeds = itertools.count(1)


def make_dataset(name: str = "set", evaluation_only: bool = False) -> Dataset:
    """Create (or return) a dataset by name."""
    dataset = db.session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        dataset = Dataset(name=name, evaluation_only=evaluation_only)
        db.session.add(dataset)
        db.session.commit()
    return dataset


def make_image(
    dataset: Dataset | None = None,
    label: str = "real",
    split: str = "train",
    file_name: str | None = None,
    fmt: str = "JPEG",
    size: tuple[int, int] = (48, 40),
    exif: dict | None = None,
) -> Image:
    """An Image row with its original and thumbnail files written, linked to ``dataset``."""
    dataset = dataset or make_dataset()
    seed = next(_seeds)
    data = make_image_bytes(seed=seed, size=size, fmt=fmt)
    image = Image(
        sha256=hashlib.sha256(data).hexdigest(),
        dataset_id=dataset.id,
        file_name=file_name or f"img_{seed:05d}.{fmt.lower().replace('jpeg', 'jpg')}",
        original_path=f"{label.upper()}/img_{seed:05d}",
        format=fmt,
        width=size[0],
        height=size[1],
        bytes=len(data),
        mode="RGB",
        has_exif=bool(exif),
        exif_summary=exif,
        jpeg_quality=90 if fmt == "JPEG" else None,
        label=label,
        label_source="folder name" if label != "unknown" else "",
        split=split,
    )
    db.session.add(image)
    db.session.flush()
    db.session.add(
        DatasetImage(
            dataset_id=dataset.id, image_id=image.id, original_path=image.original_path, label=label
        )
    )
    db.session.commit()
    _write_files(image, data)
    return image


def _write_files(image: Image, data: bytes) -> None:
    original = original_path(image)
    original.parent.mkdir(parents=True, exist_ok=True)
    original.write_bytes(data)
    thumb = thumbnail_path(image.sha256)
    thumb.parent.mkdir(parents=True, exist_ok=True)
    with PILImage.open(io.BytesIO(data)) as picture:
        picture.convert("RGB").save(thumb, format="JPEG", quality=80)


def make_version(
    name: str | None = None,
    active: bool = True,
    history: list | None = None,
    parent: ModelVersion | None = None,
) -> ModelVersion:
    """A model version row (no checkpoint behind it); ``active`` deactivates the others."""
    if active:
        db.session.execute(update(ModelVersion).values(is_active=False))
    count = db.session.scalar(select(db.func.count(ModelVersion.id)))
    version = ModelVersion(
        name=name or f"v{count + 1}",
        is_active=active,
        checkpoint_path="",
        image_size=32,
        init_weights="random",
        activated_at=utcnow() if active else None,
        history=history,
        parent_id=parent.id if parent else None,
    )
    db.session.add(version)
    db.session.commit()
    return version


def make_prediction(
    image: Image,
    version: ModelVersion,
    p_fake: float,
    label_issue_score: float | None = None,
    ood_score: float | None = 0.1,
    audit_key: float = 0.5,
    oos_p_fake: float | None = None,
    verdict: str | None = None,
) -> Prediction:
    """A prediction row; the verdict follows p_fake unless given."""
    prediction = Prediction(
        image_id=image.id,
        model_version_id=version.id,
        p_fake=p_fake,
        p_fake_raw=p_fake,
        verdict=verdict or ("fake" if p_fake >= 0.5 else "real"),
        oos_p_fake=oos_p_fake,
        label_issue_score=label_issue_score,
        ood_score=ood_score,
        audit_key=audit_key,
    )
    db.session.add(prediction)
    db.session.commit()
    return prediction


def make_scored_image(version: ModelVersion, p_fake: float, **fields) -> Image:
    """An image and its prediction in one call: image fields and prediction fields by name."""
    image_fields = {
        k: fields.pop(k)
        for k in ("dataset", "label", "split", "fmt", "exif", "size")
        if k in fields
    }
    image = make_image(**image_fields)
    make_prediction(image, version, p_fake, **fields)
    return image


def make_active_version() -> ModelVersion:
    """An active version with a real (untrained) checkpoint behind it."""
    from model.checkpoint import save_checkpoint
    from model.network import build_model
    from webapp.services.records import versions

    model, init = build_model(init="random")
    path = versions.models_dir() / "v1.pt"
    meta = {"stem": "imagenet", "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    save_checkpoint(path, model, {**meta, "init_weights": init})
    version = make_version("v1", active=True)
    version.checkpoint_path = str(path)
    db.session.commit()
    return version


def decide(user, image_id: int, choice: str, **fields):
    """Lease the image to ``user`` as the desk does (a decision needs the lease), then decide."""
    from webapp.services.review import decisions, leases

    leases.claim_image(user.id, image_id)
    return decisions.decide(user, image_id, choice, **fields)


# --- Rows for the admin, report and API tests: pictures that follow from a seed.


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


def make_seeded_image(
    dataset: Dataset,
    label: str = "real",
    split: str = "test",
    seed: int = 0,
    file_name: str | None = None,
    thumbnail: bool = True,
    original: bool = True,
) -> Image:
    """An Image row in ``dataset`` whose picture follows from ``seed`` alone (the same seed, the
    same bytes), with its original (PNG) and thumbnail (JPEG) on disk unless told otherwise."""
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
    path = Path(original_path(image))
    image.original_path = str(path)
    if original:
        _write(path, data)
    if thumbnail:
        _write(Path(thumbnail_path(sha256)), picture_bytes(seed, 16, "JPEG"))
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
