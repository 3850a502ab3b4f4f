"""The demo dataset's images: real crops of scikit-image's photographs, fakes from a small
autoencoder trained on them. PyTorch and NumPy only, so it runs from a script or a notebook.

The real class is made of crops of the colour photographs that the scikit-image wheel ships
(never the ones it would download). The fake class is made by a small convolutional autoencoder,
trained for a few hundred steps on the real crops, decoding perturbed and interpolated latents of
*other* crops: its learned ``ConvTranspose2d`` upsampling leaves the blur and checkerboard traces
real generators leave, so a detector has something honest to learn. Both classes share one size
distribution. The desk's ``demo_data`` writes them as a labelled folder.

Everything is derived from the random streams and the seed given: the same ones give the same
pixels, on any machine (the generator runs on a fixed thread count with deterministic kernels).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torch import nn

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
SIZE_MULTIPLE = 8  # sizes the generator can decode whatever its depth (at most 3 halvings)
GENERATOR_THREADS = 2  # fixed, so a 2-core laptop and a 16-core server write the same bytes
GENERATOR_SHAPE = {"width": 32, "latent_channels": 16, "downsamplings": 3}
LATENT_MIX = (0.05, 0.35)  # how far a fake's latent moves toward another crop's
LATENT_JITTER = (0.0, 0.15)  # latent noise, as a fraction of the latent's spread
CROP_SCALES = (0.45, 4.0)  # crop side / output side: below 1 upsamples, a soft real photograph
MIN_CROP_STD = 8.0  # reject near-flat crops (retina's black border, rocket's empty sky)
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class DemoImage:
    """One generated image: its pixels, true class and the photograph it came from."""

    pixels: np.ndarray
    true_label: str
    source: str


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
) -> list[DemoImage]:
    """``count`` real images: varied crops, scales and flips of the bundled photographs."""
    items = []
    for _ in range(count):
        width, height = _sample_size(rng, sizes)
        name, crop = _sample_crop(rng, photographs, width, height)
        items.append(DemoImage(pixels=crop, true_label="real", source=name))
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
def deterministic_torch(seed: int):
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
    rng: np.random.Generator, reals: list[DemoImage], batch: int, patch: int
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
    reals: list[DemoImage],
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
) -> list[DemoImage]:
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
        items.append(DemoImage(pixels=pixels, true_label="fake", source=source))
    return items


def generate_images(
    streams: Sequence[np.random.Generator],
    n_real: int,
    n_fake: int,
    sizes: Sequence[int],
    generator_steps: int,
    generator_batch: int,
    seed: int,
    on_progress: ProgressCallback | None = None,
) -> tuple[list[DemoImage], list[DemoImage], dict]:
    """The real crops, the generator trained on them and its fakes: (reals, fakes, figures).

    ``streams`` are three random generators: for the real crops, the generator's training
    batches and the fakes; ``seed`` seeds PyTorch. ``on_progress("generator", step, steps)``.
    """
    real_stream, train_stream, fake_stream = streams
    photographs = load_photographs()
    reals = sample_real_crops(real_stream, photographs, n_real, sizes)
    with deterministic_torch(seed):
        model, figures = train_generator(
            reals, train_stream, generator_steps, generator_batch, on_progress
        )
        fakes = synthesize_fakes(model, fake_stream, photographs, n_fake, sizes)
    return reals, fakes, figures
