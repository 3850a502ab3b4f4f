r"""Photographs: resize-only against native-resolution crops, at the same training budget.

Reads ``<repo>/../shared/datasets/photos-dev-298.zip`` (``real/<category>_<hash>.jpg`` -> 0,
``fake/<category>_<hash>.jpg`` -> 1; long side up to 1024 px) straight from the zip, and skips
cleanly when it is absent (a fresh clone has no ``../shared``). A fixed held-out split, seeded and
stratified by class *and* category (people, nature, city, interior: content is partly
confounded with the class, so accuracy is also printed per category), keeps ``--test-fraction``
of every (class, category) cell for the test, ``--val-fraction`` for the validation split the
temperature is fitted on, and trains on the rest.

Two arms, each trained for ``--minutes`` of the budget clock (``--budget-clock cpu``, the
default: process CPU time over the threads, so other work on a shared machine does not change
how much training an arm gets), from the same seed and recipe (``--recipe``, default ``photos``),
at the same input size, so each step costs the same in both:

- ``resize``: every image resized to ``--image-size`` square (the pixel cache's decode and
  resize, ``model.images.load_for_model``), scored the same way;
- ``crops``: random ``--image-size`` crops of each image after a ``--downscale`` of at most 2x,
  scored as the mean logits over a ``--crop-grid`` x ``--crop-grid`` grid (``model.crops``).

It drives the model directly (``model.train.train`` and ``model.predict.Predictor``, the code the
app's train and predict jobs run), not the app: the app's path adds import and job plumbing, not
numerics. Prints, per arm: held-out accuracy (at p_fake 0.5), ROC AUC, minutes of training (the
budget clock and wall clock), epochs and steps, and accuracy per category; then the CPU
(``model.machine.cpu_description``).

Examples::

    python bench/photos_bench.py --minutes 3 --threads 1          # what the README reports
    python bench/photos_bench.py --minutes 10 --image-size 128 --downscale 1

With 298 images (about 90 held out) an accuracy moves several points by chance: read the
figures as a smoke test of the two input modes, not as a ranking of them.

``OMP_WAIT_POLICY=PASSIVE python bench/photos_bench.py --minutes 3 --threads 1`` (2-core Intel
Xeon with AMX, fp32, random weights, load average 6-8 from other work), 163 / 45 / 90 images::

    arm     accuracy  AUC    CPU-min  wall-min  epochs  people  nature  city   interior
    resize  0.567     0.628  3.1      6.2       9       0.524   0.565   0.647  0.625
    crops   0.600     0.643  3.4      7.1       8       0.548   0.609   0.765  0.500

``OMP_WAIT_POLICY=PASSIVE python bench/photos_bench.py --minutes 8 --threads 2`` (same machine,
otherwise idle, after the crops' random draw was seeded per epoch and image)::

    arm     accuracy  AUC    budget-min  wall-min  epochs  people  nature  city   interior
    resize  0.567     0.624  8.0         8.7       68      0.500   0.609   0.706  0.500
    crops   0.656     0.684  8.1         8.8       68      0.667   0.652   0.765  0.375
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import TrainConfig  # noqa: E402
from model.crops import NativeImages, decode_native  # noqa: E402
from model.images import load_for_model  # noqa: E402
from model.machine import cpu_description  # noqa: E402
from model.metrics import classification_metrics  # noqa: E402
from model.predict import Predictor  # noqa: E402
from model.stats import channel_stats  # noqa: E402
from model.train import train  # noqa: E402

DEFAULT_ZIP = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "photos-dev-298.zip"
CATEGORIES = ("people", "nature", "city", "interior")


@dataclass
class Photos:
    """The encoded images of the zip with their labels (0 real, 1 fake) and categories."""

    data: list[bytes]
    labels: np.ndarray
    categories: np.ndarray


def load_zip(path: Path) -> Photos:
    """Every ``real/*.jpg`` and ``fake/*.jpg`` of the zip, encoded, in name order."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(
            name
            for name in archive.namelist()
            if name.lower().endswith((".jpg", ".jpeg", ".png"))
            and name.split("/")[0] in ("real", "fake")
        )
        data = [archive.read(name) for name in names]
    labels = np.array([1 if name.startswith("fake/") else 0 for name in names], dtype=np.int64)
    categories = np.array([Path(name).name.split("_")[0] for name in names])
    return Photos(data, labels, categories)


def split(photos: Photos, seed: int, test_fraction: float, val_fraction: float):
    """Seeded split stratified by (class, category): (train, val, test) index arrays."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in (0, 1):
        for category in sorted(set(photos.categories.tolist())):
            cell = np.flatnonzero((photos.labels == label) & (photos.categories == category))
            cell = rng.permutation(cell)
            n_test = int(round(len(cell) * test_fraction))
            n_val = int(round(len(cell) * val_fraction))
            parts["test"].append(cell[:n_test])
            parts["val"].append(cell[n_test : n_test + n_val])
            parts["train"].append(cell[n_test + n_val :])
    return tuple(np.sort(np.concatenate(parts[name])) for name in ("train", "val", "test"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--recipe", default="photos", help="TrainConfig preset of both arms")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per arm")
    parser.add_argument("--budget-clock", default="cpu", choices=("cpu", "wall"))
    parser.add_argument("--threads", type=int, help="torch threads (default: PyTorch's)")
    parser.add_argument("--image-size", type=int, default=224, help="input size = crop size")
    parser.add_argument("--downscale", type=float, default=2.0, help="crops arm: 1 to 2")
    parser.add_argument("--crop-grid", type=int, default=3, help="crops arm: N x N scoring grid")
    parser.add_argument("--arms", nargs="+", default=["resize", "crops"])
    parser.add_argument("--init", default="auto", help="auto | imagenet | random")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 | auto (timed steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser.parse_args(argv)


def arm_config(args, arm: str) -> TrainConfig:
    """The recipe for one arm: the same everything but the input mode."""
    return TrainConfig.preset(
        args.recipe,
        image_size=args.image_size,
        input_mode=arm,
        downscale=args.downscale,
        crop_grid=args.crop_grid,
        init=args.init,
        precision=args.precision,
        seed=args.seed,
        max_minutes=args.minutes,
        budget_clock=args.budget_clock,
        epochs=1000,  # the clock ends the run
        eval_every=1000,  # validate at the end only: the budget goes to training
        threads=args.threads,
    )


def arm_pixels(photos: Photos, config: TrainConfig):
    """What the arm's network reads for every image: squares, or native-scale arrays."""
    if config.input_mode == "resize":
        return np.stack([load_for_model(data, config.image_size) for data in photos.data])
    mode = config.input_settings()
    return NativeImages([decode_native(data, mode) for data in photos.data], mode)


def run_arm(args, photos: Photos, indices, arm: str, stats) -> dict:
    """Train one arm on the train split, score the test split; its figures."""
    train_idx, val_idx, test_idx = indices
    config = arm_config(args, arm)
    decode_started = time.perf_counter()
    pixels = arm_pixels(photos, config)
    decode_seconds = time.perf_counter() - decode_started
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    result = train(
        pixels[train_idx],
        photos.labels[train_idx],
        pixels[val_idx],
        photos.labels[val_idx],
        config,
        *stats,
        on_progress=print_epoch,
    )
    train_cpu = (time.process_time() - cpu_started) / max(torch.get_num_threads(), 1)
    train_wall = time.perf_counter() - wall_started
    predictor = Predictor(result.model, result.checkpoint_meta(), precision="fp32", engine="fused")
    p_fake = predictor.predict(pixels[test_idx]).p_fake
    return summarise(arm, config, result, photos, test_idx, p_fake, train_cpu, train_wall) | {
        "decode_seconds": round(decode_seconds, 1)
    }


def summarise(arm, config, result, photos, test_idx, p_fake, train_cpu, train_wall) -> dict:
    """Held-out metrics overall and per category, and what the training cost."""
    labels = photos.labels[test_idx]
    metrics = classification_metrics(labels, p_fake)
    verdicts = (p_fake >= 0.5).astype(np.int64)
    per_category = {}
    for category in CATEGORIES:
        rows = photos.categories[test_idx] == category
        if rows.any():
            per_category[category] = {
                "n": int(rows.sum()),
                "accuracy": float((verdicts[rows] == labels[rows]).mean()),
            }
    return {
        "arm": arm,
        "input": config.input_settings().describe(),
        "n_test": int(len(test_idx)),
        "accuracy": float(metrics["accuracy"]),
        "roc_auc": None if metrics.get("roc_auc") is None else float(metrics["roc_auc"]),
        "per_category": per_category,
        "train_minutes_budget_clock": round(train_cpu / 60, 2),
        "train_minutes_wall": round(train_wall / 60, 2),
        "epochs": len(result.history),
        "val_accuracy": None if result.val_metrics is None else result.val_metrics["accuracy"],
        "policy": result.policy,
    }


def print_epoch(event: dict) -> None:
    """One line per finished epoch."""
    if event.get("phase") == "epoch":
        print(
            f"  epoch {event['epoch']:3d}  train_loss {event['train_loss']:.4f} "
            f"train_acc {event['train_acc']:.4f}  {event['images_per_s']:.1f} img/s",
            flush=True,
        )


def print_arm(figures: dict) -> None:
    """The arm's figures, readable."""
    auc = "n/a" if figures["roc_auc"] is None else f"{figures['roc_auc']:.4f}"
    print(
        f"[{figures['arm']}] {figures['input']}: accuracy {figures['accuracy']:.4f}, "
        f"ROC AUC {auc} on {figures['n_test']} held-out images; trained "
        f"{figures['train_minutes_budget_clock']:.2f} min (budget clock), "
        f"{figures['train_minutes_wall']:.2f} min wall, {figures['epochs']} epochs"
    )
    cells = ", ".join(
        f"{name} {cell['accuracy']:.3f} (n={cell['n']})"
        for name, cell in figures["per_category"].items()
    )
    print(f"[{figures['arm']}] per category: {cells}", flush=True)


def main(argv=None) -> int:
    """Run the arms and print their figures; 0 when the zip is absent (skipped)."""
    args = parse_args(argv)
    if not args.zip.is_file():
        print(f"skipped: no {args.zip} (the photos dataset is not part of the project)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = load_zip(args.zip)
    indices = split(photos, args.seed, args.test_fraction, args.val_fraction)
    print(
        f"{len(photos.data)} images: {len(indices[0])} train / {len(indices[1])} val / "
        f"{len(indices[2])} test; torch threads {torch.get_num_threads()}; {cpu_description()}",
        flush=True,
    )
    # One normalisation for both arms: the training images' channel statistics at 64 px.
    stats = channel_stats(np.stack([load_for_model(photos.data[i], 64) for i in indices[0]]))
    results = []
    for arm in args.arms:
        print(f"--- {arm}", flush=True)
        results.append(run_arm(args, photos, indices, arm, stats))
        print_arm(results[-1])
    print("\nsummary:")
    for figures in results:
        print_arm(figures)
    print(f"CPU: {cpu_description()}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_description(), "arms": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
