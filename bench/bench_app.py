"""A throw-away desk for benchmarks: a temporary instance, labelled images imported through the
real importer, and model versions registered the way training registers them.

Used by ``model_bench.py`` (end-to-end scoring) and ``size_bench.py`` (the input-size table).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import import_bench
import numpy as np
import torch
from PIL import Image as PILImage

REPO = Path(__file__).resolve().parents[1]
CIFAKE = REPO.parent / "shared" / "datasets" / "cifake-train-40k.zip"

__all__ = ["CIFAKE", "fresh_app", "register_version", "write_labelled_images"]


def fresh_app(instance: Path):
    """An app on a new instance folder with its schema (``import_bench.fresh_app``), without
    Alembic's INFO lines: a benchmark's output should hold figures."""
    logging.disable(logging.INFO)
    try:
        return import_bench.fresh_app(instance)
    finally:
        logging.disable(logging.NOTSET)


def write_labelled_images(folder: Path, count: int, use_cifake: bool = True) -> str:
    """``count`` images under ``folder/real`` and ``folder/fake`` (half each); returns what
    they are. A slice of CIFAKE's training images when the zip is present, else generated
    256x256 JPEGs (smooth fields plus noise; content does not change the speed)."""
    per_class = count // 2
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True, exist_ok=True)
    if use_cifake and CIFAKE.is_file():
        with zipfile.ZipFile(CIFAKE) as archive:
            names = sorted(archive.namelist())
            for label in ("real", "fake"):
                members = [n for n in names if f"/{label.upper()}/" in n and n.endswith(".jpg")]
                for name in members[:per_class]:
                    (folder / label / Path(name).name).write_bytes(archive.read(name))
        return f"{2 * per_class} CIFAKE training images (32x32 JPEG), half real, half fake"
    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        for index in range(per_class):
            coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            base = PILImage.fromarray(coarse).resize((256, 256), PILImage.Resampling.BICUBIC)
            noise = rng.normal(0, 6, size=(256, 256, 3))
            pixels = np.clip(np.asarray(base, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
            PILImage.fromarray(pixels).save(folder / label / f"{index:05d}.jpg", quality=90)
    return f"{2 * per_class} generated 256x256 JPEGs, half labelled real, half fake"


def register_version(name: str, size: int, seed: int = 0):
    """A random-weight version at ``size`` px, trained (on paper) on the current training split,
    so scoring computes its out-of-distribution scores as it would for a trained one."""
    from model.checkpoint import save_checkpoint
    from model.network import build_model
    from webapp.extensions import db
    from webapp.models import ModelVersion
    from webapp.services.records import versions
    from webapp.services.training.trainset import select_training_set

    torch.manual_seed(seed)
    model, init = build_model(init="random")
    meta = {"image_size": size, "mean": [0.5] * 3, "std": [0.25] * 3, "stem": "imagenet"}
    path = save_checkpoint(versions.models_dir() / f"{name}.pt", model, meta)
    version = ModelVersion(
        name=name, checkpoint_path=str(path), image_size=size, init_weights=init, temperature=1.0
    )
    db.session.add(version)
    db.session.commit()
    versions.save_training_labels(name, select_training_set())
    return version
