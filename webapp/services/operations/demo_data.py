"""The bundled demo dataset: a labelled folder of real photographs and generated fakes.

``make demo`` needs labelled images without touching the network. The pictures come from
``model.demo_generator`` (crops of scikit-image's photographs; fakes decoded by a small
autoencoder trained on them); this module gives both classes one JPEG quality distribution, RGB
and no EXIF, so the shortcut audit finds nothing but content, and writes them as ``real/`` and
``fake/``. A few images are placed in the wrong folder on purpose, so the review queue has real
work; ``MANIFEST.json`` records every file's true class.

Everything is derived from one seed: the same arguments give byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from model.demo_generator import SIZE_MULTIPLE, DemoImage, ProgressCallback, generate_images

MANIFEST_NAME = "MANIFEST.json"
# Bumped whenever the recipe changes, so an old folder is rebuilt instead of reused.
RECIPE_VERSION = 1
DEFAULT_SIZES = (64, 80, 96, 112, 128)
JPEG_QUALITIES = (75, 95)  # inclusive range, drawn per image the same way for both classes


@dataclass(frozen=True)
class DemoParams:
    """Everything that determines the folder's bytes; stored in the manifest for reuse checks."""

    seed: int = 0
    n_real: int = 300
    n_fake: int = 300
    image_size: tuple[int, ...] = DEFAULT_SIZES
    mislabelled_fraction: float = 0.03
    generator_steps: int = 300
    generator_batch: int = 32

    def as_json(self) -> dict:
        """A JSON-ready dict, including the recipe version."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["image_size"] = list(self.image_size)
        return {"recipe_version": RECIPE_VERSION, **fields}


@dataclass
class _Item(DemoImage):
    """One image before it is written: the generated image, its JPEG quality, its folder (its
    class, or on purpose the other one) and its file name."""

    quality: int = 90
    folder_label: str = ""
    name: str = ""


def _assign_folders(rng: np.random.Generator, items: list[_Item], fraction: float) -> None:
    """Put a ``fraction`` of each class in the other class's folder, on purpose."""
    for label, other in (("real", "fake"), ("fake", "real")):
        members = [index for index, item in enumerate(items) if item.true_label == label]
        wrong = round(fraction * len(members))
        chosen = set(rng.choice(members, size=wrong, replace=False).tolist()) if wrong else set()
        for index in members:
            items[index].folder_label = other if index in chosen else label


def _assign_names_and_qualities(rng: np.random.Generator, items: list[_Item]) -> None:
    """Neutral shuffled file names (no class in the name) and one JPEG quality distribution."""
    order = rng.permutation(len(items))
    digits = max(4, len(str(len(items))))
    low, high = JPEG_QUALITIES
    for position, index in enumerate(order):
        item = items[int(index)]
        item.name = f"{item.folder_label}/demo_{position:0{digits}d}.jpg"
        item.quality = int(rng.integers(low, high + 1))


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """Baseline RGB JPEG, 4:2:0, no EXIF or other metadata: the same encoder for both classes."""
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode=None).convert("RGB").save(
        buffer, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False
    )
    return buffer.getvalue()


def _write_items(folder: Path, items: list[_Item], on_progress: ProgressCallback | None) -> list:
    """Write every image; returns the manifest's per-file records."""
    (folder / "real").mkdir(parents=True)
    (folder / "fake").mkdir()
    records = []
    for done, item in enumerate(sorted(items, key=lambda entry: entry.name), start=1):
        data = encode_jpeg(item.pixels, item.quality)
        (folder / item.name).write_bytes(data)
        records.append(
            {
                "path": item.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "true_label": item.true_label,
                "folder_label": item.folder_label,
                "mislabelled": item.true_label != item.folder_label,
                "source": item.source,
                "width": int(item.pixels.shape[1]),
                "height": int(item.pixels.shape[0]),
                "jpeg_quality": item.quality,
            }
        )
        if on_progress and (done % 50 == 0 or done == len(items)):
            on_progress("write", done, len(items))
    return records


def demo_params(
    seed: int = 0,
    n_real: int = 300,
    n_fake: int = 300,
    image_size: int | Sequence[int] = DEFAULT_SIZES,
    mislabelled_fraction: float = 0.03,
    generator_steps: int = 300,
    generator_batch: int = 32,
) -> DemoParams:
    """Checked, normalised parameters (``image_size`` may be one side or a list of sides)."""
    sizes = (image_size,) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    params = DemoParams(
        int(seed),
        int(n_real),
        int(n_fake),
        sizes,
        float(mislabelled_fraction),
        int(generator_steps),
        int(generator_batch),
    )
    _check_params(params)
    return params


def _check_params(params: DemoParams) -> None:
    """Refuse arguments that cannot make a sensible folder, with a message that says why."""
    if params.n_real < 1 or params.n_fake < 1:
        raise ValueError("n_real and n_fake must be at least 1")
    if not params.image_size or any(
        not 16 <= size <= 512 or size % SIZE_MULTIPLE for size in params.image_size
    ):
        raise ValueError(f"image sizes must be multiples of {SIZE_MULTIPLE} from 16 to 512")
    if not 0 <= params.mislabelled_fraction < 0.5:
        raise ValueError("mislabelled_fraction must be in [0, 0.5)")
    if params.generator_steps < 1 or params.generator_batch < 1:
        raise ValueError("generator_steps and generator_batch must be at least 1")


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, or None when there is none or it cannot be read."""
    try:
        return json.loads((Path(folder) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, params: DemoParams) -> bool:
    """True when ``folder`` was built with exactly ``params`` and all its files are intact."""
    manifest = read_manifest(folder)
    if not manifest or manifest.get("params") != params.as_json():
        return False
    for record in manifest.get("files", []):
        path = Path(folder) / record["path"]
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != record["sha256"]:
            return False
    return True


def _replace_folder(built: Path, out_dir: Path) -> None:
    """Move the finished folder into place; an old demo folder is replaced, anything else kept."""
    if out_dir.exists():
        if any(out_dir.iterdir()) and read_manifest(out_dir) is None:
            raise FileExistsError(
                f"{out_dir} exists and is not a demo folder (no {MANIFEST_NAME}); "
                "choose another folder or remove it"
            )
        shutil.rmtree(out_dir)
    built.rename(out_dir)


def _check_destination(out_dir: Path) -> None:
    """Fail before any work when ``out_dir`` holds something that is not a demo folder."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and read_manifest(out_dir) is None:
        raise FileExistsError(
            f"{out_dir} exists and is not a demo folder (no {MANIFEST_NAME}); "
            "choose another folder or remove it"
        )


def _make_items(params: DemoParams, on_progress: ProgressCallback | None) -> tuple[list, dict]:
    """All images in memory, real and fake, with folders, names and qualities assigned."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(params.seed).spawn(5)]
    real_stream, train_stream, fake_stream, label_stream, name_stream = streams
    reals, fakes, generator = generate_images(
        (real_stream, train_stream, fake_stream),
        params.n_real,
        params.n_fake,
        params.image_size,
        params.generator_steps,
        params.generator_batch,
        params.seed,
        on_progress,
    )
    items = [_Item(image.pixels, image.true_label, image.source) for image in reals + fakes]
    _assign_folders(label_stream, items, params.mislabelled_fraction)
    _assign_names_and_qualities(name_stream, items)
    return items, generator


def _manifest(params: DemoParams, records: list, generator: dict) -> dict:
    """The manifest: parameters, per-file truth, the mislabelled files and counts."""
    counts = {"real": 0, "fake": 0}
    true_counts = {"real": 0, "fake": 0}
    for record in records:
        counts[record["folder_label"]] += 1
        true_counts[record["true_label"]] += 1
    return {
        "params": params.as_json(),
        "description": "RealFake Review demo: real = crops of scikit-image sample photographs, "
        "fake = decoded by a small autoencoder trained on them; 'mislabelled' files sit in "
        "the other class's folder on purpose.",
        "counts": {"by_folder": counts, "by_true_label": true_counts},
        "mislabelled": [record["path"] for record in records if record["mislabelled"]],
        "generator": {key: generator[key] for key in ("steps", "final_loss")},
        "files": records,
    }


def build_demo_folder(
    out_dir: Path,
    seed: int = 0,
    n_real: int = 300,
    n_fake: int = 300,
    image_size: int | Sequence[int] = DEFAULT_SIZES,
    mislabelled_fraction: float = 0.03,
    on_progress: ProgressCallback | None = None,
    generator_steps: int = 300,
    generator_batch: int = 32,
) -> dict:
    """Write the demo folder (``real/*.jpg``, ``fake/*.jpg``, ``MANIFEST.json``) and summarise it.

    ``image_size`` is one side length or the list both sides are drawn from, for both classes.
    ``on_progress(stage, done, total)`` is called during the "generator" and "write" stages.
    The folder appears complete or not at all: it is built beside ``out_dir`` and moved in; an
    old demo folder there is replaced, anything else is refused.
    """
    started = time.perf_counter()
    params = demo_params(
        seed, n_real, n_fake, image_size, mislabelled_fraction, generator_steps, generator_batch
    )
    out_dir = Path(out_dir)
    _check_destination(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    items, generator = _make_items(params, on_progress)
    building = out_dir.with_name(f".{out_dir.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    try:
        records = _write_items(building, items, on_progress)
        manifest = _manifest(params, records, generator)
        (building / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        _replace_folder(building, out_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return summarise(out_dir, manifest, generator, time.perf_counter() - started)


def summarise(out_dir: Path, manifest: dict, generator: dict, seconds: float) -> dict:
    """The summary ``build_demo_folder`` returns (also usable on a folder that was reused)."""
    mislabelled = [record for record in manifest["files"] if record["mislabelled"]]
    return {
        "folder": str(out_dir),
        "seed": manifest["params"]["seed"],
        "params": manifest["params"],
        "counts": manifest["counts"],
        "mislabelled": [
            {key: record[key] for key in ("path", "true_label", "folder_label")}
            for record in mislabelled
        ],
        "generator": generator,
        "build_seconds": round(seconds, 2),
    }


def ensure_demo_folder(out_dir: Path, force: bool = False, **options) -> dict:
    """Build the demo folder unless ``out_dir`` already holds an intact one with these options.

    ``options`` are :func:`build_demo_folder`'s keyword arguments. The summary says whether the
    folder was ``reused``; a reused folder reports the generator figures from its manifest.
    """
    out_dir = Path(out_dir)
    build_options = {key: value for key, value in options.items() if key != "on_progress"}
    if not force and is_complete(out_dir, demo_params(**build_options)):
        manifest = read_manifest(out_dir)
        return {**summarise(out_dir, manifest, manifest["generator"], 0.0), "reused": True}
    return {**build_demo_folder(out_dir, **options), "reused": False}
