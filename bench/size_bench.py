"""What each input size costs and reaches: train and score the demo dataset at several sizes.

    .venv/bin/python bench/size_bench.py [--sizes 32 64 128 224] [--epochs 4] [--threads 2]
        [--epochs-for 224=1] [--demo-cache /tmp/realfake-demo-src]

In a temporary instance, ``flask data demo`` (the real command) builds and imports the demo
dataset (600 images, deterministic). Then, for each size, with the same epochs, seed and "demo"
preset (the recipe ``make demo`` trains with; only ``image_size`` changes):

- training: the app's training set and pixel cache (built from the stored originals at that
  size, untimed), ``model.train.train`` as the training job calls it; training images/s (the
  loop's own figure, wall clock), wall and CPU seconds per epoch (validation included);
- inference: ``Predictor`` (the fast path the scoring job uses) over all 600 images, best of
  two passes, images/s on the wall clock and per CPU-second;
- held-out quality: accuracy and ROC AUC on the images never trained on (the val and test
  splits; val only sets the calibration temperature, which moves neither figure), against the
  true classes from the demo's manifest (a few import labels are wrong on purpose).

On a machine shared with other work the CPU-second figures are the ones to compare; the load
average is printed with every size. Building the demo costs minutes on a 2-core CPU (it trains
its fake-image generator): ``--demo-cache DIR`` keeps the built folder and reuses it. At 224 px
an epoch costs about 10x one at 64 px: ``--epochs-for 224=1`` keeps such a run short (its
accuracy then is not comparable with the other rows; its costs are).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_app import fresh_app  # noqa: E402

from model.metrics import classification_metrics  # noqa: E402
from model.predict import Predictor  # noqa: E402
from model.train import train  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 224])
    parser.add_argument("--epochs", type=int, default=4, help="the same for every size")
    parser.add_argument(
        "--epochs-for",
        action="append",
        default=[],
        metavar="SIZE=EPOCHS",
        help="other epochs for one size (say so when quoting its accuracy)",
    )
    parser.add_argument("--demo-cache", type=Path, help="keep the built demo folder here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: PyTorch's)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    try:
        args.epochs_for = {
            int(size): int(epochs) for size, epochs in (v.split("=") for v in args.epochs_for)
        }
    except ValueError:
        parser.error("--epochs-for takes SIZE=EPOCHS, e.g. 224=1")
    return args


def build_demo(app, cache: Path | None) -> None:
    """``flask data demo`` into the app's instance, as a user would run it; with ``cache``,
    the folder is copied from there first (the command reuses an intact one) and kept there."""
    folder = Path(app.instance_path) / "demo-src"
    if cache is not None and cache.is_dir():
        shutil.copytree(cache, folder)
    result = app.test_cli_runner().invoke(args=["data", "demo"])
    if result.exit_code != 0:
        raise RuntimeError(f"flask data demo failed: {result.output}")
    print(result.output.strip().splitlines()[-1], flush=True)
    if cache is not None and not cache.is_dir():
        shutil.copytree(folder, cache)


def true_classes(app, image_ids: list[int]) -> np.ndarray:
    """0 (real) / 1 (fake) per image from the demo manifest, matched by SHA-256."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Image

    manifest = json.loads((Path(app.instance_path) / "demo-src" / "MANIFEST.json").read_text())
    by_hash = {record["sha256"]: record["true_label"] for record in manifest["files"]}
    hashes = dict(db.session.execute(select(Image.id, Image.sha256)).all())
    return np.array([int(by_hash[hashes[i]] == "fake") for i in image_ids], dtype=np.int64)


def measure_size(app, size: int, args) -> dict:
    """Train at ``size`` and measure training speed, inference speed and held-out quality."""
    from webapp.services.importing.pixels import load_pixels
    from webapp.services.training.normalisation import channel_stats
    from webapp.services.training.training import train_config_from
    from webapp.services.training.trainset import select_training_set

    trainset = select_training_set()
    train_ids, train_labels = trainset.train.as_arrays()
    val_ids, val_labels = trainset.val.as_arrays()
    held_out = np.concatenate([val_ids, trainset.test.as_arrays()[0]])
    mean, std = channel_stats(trainset.train.ids, size)
    config = train_config_from(
        {
            "preset": "demo",
            "image_size": size,
            "epochs": args.epochs_for.get(size, args.epochs),
            "seed": args.seed,
        }
    )
    train_pixels, val_pixels = load_pixels(train_ids, size), load_pixels(val_ids, size)
    started, started_cpu = time.perf_counter(), time.process_time()
    result = train(train_pixels, train_labels, val_pixels, val_labels, config, mean, std)
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    predictor = Predictor(result.model, result.checkpoint_meta(), device=config.device)
    every_id = np.concatenate([train_ids, held_out])
    inference = best_inference(predictor, load_pixels(every_id, size))
    scores = predictor.predict(load_pixels(held_out, size)).p_fake
    quality = classification_metrics(true_classes(app, held_out.tolist()), scores)
    return {
        "size": size,
        "epochs": len(result.history),
        "train_images": len(train_ids),
        "train_images_per_s": float(np.mean([row["images_per_s"] for row in result.history])),
        "epoch_wall_s": wall / len(result.history),
        "epoch_cpu_s": cpu / len(result.history),
        "inference_images_per_s": inference[0],
        "inference_images_per_cpu_s": inference[1],
        "held_out": len(held_out),
        "accuracy": float(quality["accuracy"]),
        "roc_auc": float(quality["roc_auc"]),
        "load_average": os.getloadavg()[0],
    }


def best_inference(predictor: Predictor, pixels: np.ndarray) -> tuple[float, float]:
    """(images/s, images per CPU-second), the best of two passes after a warm-up batch."""
    predictor.predict(pixels[:64])
    best = (0.0, 0.0)
    for _ in range(2):
        started, started_cpu = time.perf_counter(), time.process_time()
        predictor.predict(pixels)
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        best = (max(best[0], len(pixels) / wall), max(best[1], len(pixels) / cpu))
    return best


def print_row(row: dict) -> None:
    print(
        f"{row['size']:>4} px | train {row['train_images_per_s']:6.1f} img/s, "
        f"{row['epoch_wall_s']:6.1f} s/epoch wall, {row['epoch_cpu_s']:6.1f} CPU-s/epoch | "
        f"inference {row['inference_images_per_s']:6.1f} img/s, "
        f"{row['inference_images_per_cpu_s']:6.1f} img/CPU-s | held-out ({row['held_out']}) "
        f"accuracy {row['accuracy']:.3f}, ROC AUC {row['roc_auc']:.3f} | "
        f"load {row['load_average']:.1f}",
        flush=True,
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, epochs {args.epochs}, "
        f"seed {args.seed}, preset demo; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="size-bench-") as folder:
        app = fresh_app(Path(folder) / "instance")
        with app.app_context():
            build_demo(app, args.demo_cache)
            for size in args.sizes:
                rows.append(measure_size(app, size, args))
                print_row(rows[-1])
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
