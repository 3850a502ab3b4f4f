"""The bundled demo dataset: real photographs from scikit-image, fakes from a generator we train.

``make demo`` needs labelled images without touching the network. The real class is made of
crops of the colour photographs that the scikit-image wheel ships (never the ones it would
download). The fake class is made by a small convolutional autoencoder, trained here for a few
hundred steps on the real crops, decoding perturbed and interpolated latents of *other* crops: its
learned ``ConvTranspose2d`` upsampling leaves the blur and checkerboard traces real generators
leave, so a detector has something honest to learn. Both classes share one size distribution,
one JPEG quality distribution, RGB and no EXIF, so the shortcut audit finds nothing but content.
A few images are placed in the wrong folder on purpose, so the review queue has real work;
``MANIFEST.json`` records every file's true class.

Everything is derived from one seed: the same arguments give byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torch import nn

MANIFEST_NAME = "MANIFEST.json"
# Bumped whenever the recipe changes, so an old folder is rebuilt instead of reused.
RECIPE_VERSION = 1
# Colour photographs bundled inside the scikit-image wheel (skimage/data/), read from disk so
# nothing can trigger a pooch download. Greyscale samples are left out: converting them would
# make exactly-grey real images that a decoder never reproduces exactly, a shortcut.
PHOTOGRAPHS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
)
DEFAULT_SIZES = (64, 80, 96, 112, 128)
JPEG_QUALITIES = (75, 95)  # inclusive range, drawn per image the same way for both classes
SIZE_MULTIPLE = 8  # sizes the generator can decode whatever its depth (at most 3 halvings)
GENERATOR_THREADS = 2  # fixed, so a 2-core laptop and a 16-core server write the same bytes
GENERATOR_SHAPE = {"width": 32, "latent_channels": 16, "downsamplings": 3}
LATENT_MIX = (0.05, 0.35)  # how far a fake's latent moves toward another crop's
LATENT_JITTER = (0.0, 0.15)  # latent noise, as a fraction of the latent's spread
CROP_SCALES = (0.45, 4.0)  # crop side / output side: below 1 upsamples, a soft real photograph
MIN_CROP_STD = 8.0  # reject near-flat crops (retina's black border, rocket's empty sky)
ProgressCallback = Callable[[str, int, int], None]


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
class _Item:
    """One image before it is written: its pixels, true class and where it came from."""

    pixels: np.ndarray
    true_label: str
    source: str
    quality: int = 90
    folder_label: str = ""
    name: str = ""


# ----------------------------------------------------------------------------- photographs


def load_photographs() -> list[tuple[str, np.ndarray]]:
    """The bundled colour photographs as RGB uint8 arrays, read straight from the wheel."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    photographs = []
    for file_name in PHOTOGRAPHS:
        path = folder / file_name
        if not path.is_file():
            raise FileNotFoundError(f"scikit-image sample {file_name} is not bundled at {path}")
        with PILImage.open(path) as image:
            photographs.append((path.stem, np.asarray(image.convert("RGB"))))
    return photographs


def _sample_crop(
    rng: np.random.Generator, photographs: list, width: int, height: int
) -> tuple[str, np.ndarray]:
    """A random crop of a random photograph, resized to ``width`` x ``height``, maybe flipped."""
    for _ in range(50):
        name, pixels = photographs[int(rng.integers(len(photographs)))]
        rows, cols = pixels.shape[:2]
        high = min(CROP_SCALES[1], cols / width, rows / height)  # the box must fit
        low = min(CROP_SCALES[0], high)
        scale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        box_w, box_h = width * scale, height * scale
        left, top = rng.uniform(0, cols - box_w), rng.uniform(0, rows - box_h)
        image = PILImage.fromarray(pixels).resize(
            (width, height), PILImage.Resampling.LANCZOS, box=(left, top, left + box_w, top + box_h)
        )
        crop = np.asarray(image)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if crop.mean(axis=2).std() >= MIN_CROP_STD:
            return name, np.ascontiguousarray(crop)
    return name, np.ascontiguousarray(crop)  # pragma: no cover - 50 flat crops in a row


def _sample_size(rng: np.random.Generator, sizes: Sequence[int]) -> tuple[int, int]:
    """Width and height drawn independently from ``sizes``: one distribution for both classes."""
    return int(rng.choice(sizes)), int(rng.choice(sizes))


def sample_real_crops(
    rng: np.random.Generator, photographs: list, count: int, sizes: Sequence[int]
) -> list[_Item]:
    """``count`` real images: varied crops, scales and flips of the bundled photographs."""
    items = []
    for _ in range(count):
        width, height = _sample_size(rng, sizes)
        name, crop = _sample_crop(rng, photographs, width, height)
        items.append(_Item(pixels=crop, true_label="real", source=name))
    return items


# ----------------------------------------------------------------------------- generator


class DemoAutoencoder(nn.Module):
    """A small fully convolutional autoencoder; its decoder is the demo's "generator".

    Three stride-2 convolutions down to a spatial latent, three learned ``ConvTranspose2d``
    upsamplings back: the same kind of upsampling that leaves periodic traces in real generators'
    output. Fully convolutional, so it decodes any size that is a multiple of 8.
    """

    def __init__(self, width: int = 32, latent_channels: int = 16, downsamplings: int = 3) -> None:
        super().__init__()
        channels = [3] + [width * 2**level for level in range(downsamplings - 1)]
        encoder: list[nn.Module] = []
        for inputs, outputs in zip(channels, channels[1:], strict=False):
            encoder += [nn.Conv2d(inputs, outputs, 4, 2, 1), nn.ReLU()]
        encoder.append(nn.Conv2d(channels[-1], latent_channels, 4, 2, 1))
        decoder: list[nn.Module] = []
        widths = [latent_channels] + channels[:0:-1]
        for inputs, outputs in zip(widths, widths[1:], strict=False):
            decoder += [nn.ConvTranspose2d(inputs, outputs, 4, 2, 1), nn.ReLU()]
        decoder += [nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1), nn.Sigmoid()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``pixels`` (N, 3, H, W) in [0, 1]."""
        return self.decoder(self.encoder(pixels))


@contextmanager
def _deterministic_torch(seed: int):
    """Seed torch, ask for deterministic kernels on a fixed thread count; restore afterwards."""
    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        # Kernels split their sums by thread, so the bytes depend on the thread count: fix it.
        torch.set_num_threads(GENERATOR_THREADS)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 to (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def _to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] to (H, W, 3) uint8."""
    array = tensor[0].permute(1, 2, 0).clamp(0, 1).numpy()
    return np.rint(array * 255.0).astype(np.uint8)


def _training_batch(
    rng: np.random.Generator, reals: list[_Item], batch: int, patch: int
) -> torch.Tensor:
    """``batch`` random ``patch`` x ``patch`` windows of random real crops."""
    windows = []
    for index in rng.integers(len(reals), size=batch):
        pixels = reals[int(index)].pixels
        top = int(rng.integers(pixels.shape[0] - patch + 1))
        left = int(rng.integers(pixels.shape[1] - patch + 1))
        windows.append(pixels[top : top + patch, left : left + patch])
    array = np.stack(windows).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def train_generator(
    reals: list[_Item],
    rng: np.random.Generator,
    steps: int,
    batch: int,
    on_progress: ProgressCallback | None = None,
) -> tuple[DemoAutoencoder, dict]:
    """Train the autoencoder on windows of the real crops; returns it and its training figures."""
    patch = min(64, min(min(item.pixels.shape[:2]) for item in reals))
    patch -= patch % SIZE_MULTIPLE
    model = DemoAutoencoder(**GENERATOR_SHAPE)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    started, loss_value = time.perf_counter(), float("nan")
    model.train()
    for step in range(steps):
        pixels = _training_batch(rng, reals, batch, patch)
        loss = nn.functional.mse_loss(model(pixels), pixels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        loss_value = loss.detach().item()
        if on_progress and (step + 1) % 10 == 0:
            on_progress("generator", step + 1, steps)
    seconds = time.perf_counter() - started
    model.eval()
    return model, {"steps": steps, "final_loss": round(loss_value, 6), "train_seconds": seconds}


@torch.inference_mode()
def synthesize_fakes(
    model: DemoAutoencoder,
    rng: np.random.Generator,
    photographs: list,
    count: int,
    sizes: Sequence[int],
) -> list[_Item]:
    """``count`` fakes: decoded latents of fresh crops, pulled toward another crop and jittered.

    The crops come from their own random stream, so no fake is a reconstruction of a real file.
    """
    items = []
    for _ in range(count):
        width, height = _sample_size(rng, sizes)
        source, first = _sample_crop(rng, photographs, width, height)
        _, second = _sample_crop(rng, photographs, width, height)
        latent = model.encoder(_to_tensor(first))
        partner = model.encoder(_to_tensor(second))
        mix, jitter = rng.uniform(*LATENT_MIX), rng.uniform(*LATENT_JITTER)
        noise = torch.from_numpy(rng.standard_normal(latent.shape).astype(np.float32))
        latent = latent + mix * (partner - latent) + jitter * float(latent.std()) * noise
        pixels = _to_pixels(model.decoder(latent))
        items.append(_Item(pixels=pixels, true_label="fake", source=source))
    return items


# ----------------------------------------------------------------------------- folder


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
    photographs = load_photographs()
    reals = sample_real_crops(real_stream, photographs, params.n_real, params.image_size)
    with _deterministic_torch(params.seed):
        model, generator = train_generator(
            reals, train_stream, params.generator_steps, params.generator_batch, on_progress
        )
        fakes = synthesize_fakes(model, fake_stream, photographs, params.n_fake, params.image_size)
    items = reals + fakes
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
