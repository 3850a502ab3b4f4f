"""Model benchmark: inference and training images/s, eager fp32 against the fast paths.

Everything runs in one process on the same generated images, and every figure is compared with
the eager fp32 baseline measured in the same run (contiguous NCHW, batch norm unfused: the
network as the seed used it). Each measurement is the best of ``--repeats`` timed passes after
a warm-up pass, which matters on a shared machine.

Sections (``--sections``): ``loader`` (BatchLoader against per-image Dataset + DataLoader),
``inference`` (model only, per engine, at 224 px and the demo size), ``training`` (eager fp32
against the fast path at 224 px, the demo size and CIFAKE's 32 px). More sections can be
registered in ``SECTIONS`` (the web app adds ``end_to_end``: stored images to prediction rows).

    python bench/model_bench.py                     # 3-5 minutes on a 2-core CPU
    python bench/model_bench.py --sections inference --compile
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.cpu_conv import patch_small_convolutions  # noqa: E402
from model.data import (  # noqa: E402
    ArrayDataset,
    BatchLoader,
    channel_stats,
    train_transform,
)
from model.device import cpu_has_fast_bf16, pick_device, precision_policy  # noqa: E402
from model.engine import train_one_epoch  # noqa: E402
from model.network import build_model  # noqa: E402
from model.predict import Predictor  # noqa: E402

Row = tuple[str, float, str]  # (label, images per second, baseline label it is compared with)


def generated_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Random-ish uint8 images (smooth fields plus noise): content does not change the speed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 8, 8, 3), dtype=np.uint8)
    images = np.repeat(np.repeat(coarse, -(-size // 8), 1), -(-size // 8), 2)[:, :size, :size]
    noise = rng.integers(0, 16, size=images.shape, dtype=np.uint8)
    return images + noise


def best_rates(runs: list[Callable[[], int]], repeats: int) -> list[float]:
    """Images per second of each run: the fastest of ``repeats`` timed calls after a warm-up.

    The runs are interleaved (round after round), so a burst of load from other processes on a
    shared machine hits every variant alike instead of one of them.
    """
    for run in runs:
        run()
    best = [0.0] * len(runs)
    for _ in range(repeats):
        for index, run in enumerate(runs):
            started = time.perf_counter()
            count = run()
            best[index] = max(best[index], count / (time.perf_counter() - started))
    return best


def meta_for(size: int, stem: str = "imagenet") -> dict:
    return {
        "image_size": size,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "temperature": 1.0,
        "stem": stem,
        "architecture": "resnet18",
        "class_order": ["real", "fake"],
    }


def loader_section(args) -> list[Row]:
    """BatchLoader (sorted batch reads + batch transform) against Dataset + DataLoader."""
    size, count, batch = args.demo_size, 4096, 128
    images = generated_images(count, size)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "images.npy"
        np.save(path, images)
        mapped = np.load(path, mmap_mode="r")
        labels = np.zeros(count, dtype=np.int64)
        transform = train_transform(size, [0.5] * 3, [0.25] * 3, augment="flip")

        def batch_loader() -> int:
            return sum(len(y) for _, y in BatchLoader(mapped, labels, batch, transform, True))

        def data_loader() -> int:
            dataset = ArrayDataset(mapped, labels, transform)
            loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True)
            return sum(len(y) for _, y in loader)

        base = f"loader {size}px: Dataset+DataLoader (memmap)"
        slow, fast = best_rates([data_loader, batch_loader], args.repeats)
        return [(base, slow, base), (f"loader {size}px: BatchLoader (memmap)", fast, base)]


def inference_rows(args, size: int, count: int) -> list[Row]:
    """Model-only inference (uint8 array in, outputs out) for each engine at one input size."""
    torch.manual_seed(0)
    model, _ = build_model(init="random")
    images = generated_images(count, size)
    meta = meta_for(size)
    device = pick_device(args.device)
    fast = precision_policy(device)
    baseline_policy = replace(fast, autocast_dtype=None, channels_last=False)
    engines = [
        ("eager fp32 (baseline)", "eager", baseline_policy),
        (f"eager {fast.name}", "eager", fast),
        (f"fused {fast.name}", "fused", fast),
        (f"jit {fast.name}", "jit", fast),
    ]
    if args.compile:
        engines.append((f"compile {fast.name}", "compile", fast))
    base = f"inference {size}px: eager fp32 (baseline)"
    runs = []
    for _, engine, policy in engines:
        predictor = Predictor(model, meta, engine=engine, policy=policy)
        runs.append(lambda p=predictor: len(p.predict(images, batch_size=args.batch)))
    rates = best_rates(runs, args.repeats)
    return [
        (f"inference {size}px: {label}", rate, base)
        for (label, _, _), rate in zip(engines, rates, strict=True)
    ]


def inference_section(args) -> list[Row]:
    """Inference at 224 px and at the demo size."""
    return inference_rows(args, 224, args.n224) + inference_rows(args, args.demo_size, args.n_demo)


def training_rows(args, size: int, count: int, batch: int) -> list[Row]:
    """Training images/s (transform included), baseline against the fast path(s)."""
    images = generated_images(count, size)
    labels = np.arange(count) % 2
    mean, std = channel_stats(images)
    fast = precision_policy(pick_device(args.device))
    baseline = replace(fast, autocast_dtype=None, channels_last=False)
    patch = fast.device.type == "cpu"
    variants = [
        ("eager fp32 (baseline)", baseline, False, False),
        (f"eager {fast.name}", fast, False, False),
        ("fast path: + small-conv grad", fast, patch, False),
    ]
    if args.compile:
        variants.append((f"compile {fast.name} + small-conv grad", fast, patch, True))
    base = f"training {size}px bs{batch}: eager fp32 (baseline)"
    runs = [
        _training_run(images, labels, (mean, std), batch, policy, patched, compiled)
        for _, policy, patched, compiled in variants
    ]
    rates = best_rates(runs, args.repeats)
    return [
        (f"training {size}px bs{batch}: {label}", rate, base)
        for (label, *_), rate in zip(variants, rates, strict=True)
    ]


def _training_run(images, labels, stats, batch, policy, patched, compiled) -> Callable[[], int]:
    """A function training one pass over the images (its own model and optimizer)."""
    torch.manual_seed(0)
    model, _ = build_model(init="random")
    if patched:
        patch_small_convolutions(model)
    model = model.to(policy.device, memory_format=policy.memory_format())
    step_model = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    transform = train_transform(images.shape[1], *stats, augment="flip")
    loader = BatchLoader(images, labels, batch, transform, shuffle=True, drop_last=True)
    loss_fn = nn.CrossEntropyLoss()

    def epoch() -> int:
        return train_one_epoch(step_model, loader, optimizer, policy, loss_fn)["images"]

    return epoch


def training_section(args) -> list[Row]:
    """Training at 224 px, at the demo size and at 32 px (CIFAKE)."""
    return (
        training_rows(args, 224, args.train224, 16)
        + training_rows(args, args.demo_size, args.train_demo, 64)
        + training_rows(args, 32, args.train_demo * 2, 128)
    )


SECTIONS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "loader": loader_section,
    "inference": inference_section,
    "training": training_section,
}
"""Section name -> function(args) returning rows; add more (e.g. ``end_to_end``) here."""


def print_rows(rows: list[Row]) -> None:
    """One line per row with images/s and the ratio to its baseline."""
    rates = {label: rate for label, rate, _ in rows}
    for label, rate, base in rows:
        ratio = rate / rates[base] if rates.get(base) else float("nan")
        print(f"  {label:58s} {rate:9.1f} img/s  {ratio:5.2f}x", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--demo-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="inference batch size")
    parser.add_argument("--n224", type=int, default=48, help="images for inference at 224 px")
    parser.add_argument("--n-demo", type=int, default=512, help="images for inference, demo size")
    parser.add_argument("--train224", type=int, default=32, help="images per training pass, 224")
    parser.add_argument("--train-demo", type=int, default=256, help="images per pass, demo size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(
        f"device {device}, policy {precision_policy(device).name}, torch "
        f"{torch.__version__}, threads {torch.get_num_threads()}, fast bf16 "
        f"{cpu_has_fast_bf16()}",
        flush=True,
    )
    started = time.perf_counter()
    for name in args.sections:
        print(f"[{name}]", flush=True)
        print_rows(SECTIONS[name](args))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
