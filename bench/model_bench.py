"""Model benchmark: inference and training images/s, eager fp32 against the fast paths.

Everything runs in one process on the same generated images, and every figure is compared with
the eager fp32 baseline measured in the same run (contiguous NCHW, batch norm unfused: the
network as the seed used it). Each measurement is the best of ``--repeats`` timed passes after
a warm-up pass, which matters on a shared machine.

Sections (``--sections``): ``loader`` (BatchLoader against per-image Dataset + DataLoader),
``inference`` (model only at 224 px and the demo size: every candidate ``model.tuning`` times,
eager, fused, TorchScript and ``torch.compile`` with freezing, in fp32 and bf16 at two batch
sizes, and the one it chooses), ``end_to_end`` (the app's real scoring job, stored images to
Prediction rows, with the chosen engine against eager fp32 and against the chosen engine alone;
see ``end_to_end_section``), ``training`` (eager fp32 against what the app's training chooses by
timed steps, at 224 px, the demo size and CIFAKE's 32 px). A last block prints the targets with
what this run reached and the CPU it ran on (model name and the vector units that matter).

Every row gives images/s by the wall clock and images per CPU-second of this process (all its
threads): on a machine shared with other work the wall clock moves with their load, the CPU
figure much less. The ratio columns compare each row with its baseline row on both clocks.

    python bench/model_bench.py                     # 10-20 minutes on a 2-core CPU
    python bench/model_bench.py --sections end_to_end --e2e-images 512
    python bench/model_bench.py --sections inference training --no-compile
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import network_words  # noqa: E402
from model.cpu_conv import patch_small_convolutions  # noqa: E402
from model.data import (  # noqa: E402
    ArrayDataset,
    BatchLoader,
    train_transform,
)
from model.device import cpu_has_fast_bf16, pick_device, precision_policy  # noqa: E402
from model.engine import train_one_epoch  # noqa: E402
from model.machine import cpu_description  # noqa: E402
from model.network import STEMS, build_model  # noqa: E402
from model.predict import Predictor  # noqa: E402
from model.stats import channel_stats  # noqa: E402
from model.threads import configure_threads, describe  # noqa: E402
from model.tuning import TuningResult, tune, tune_training  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One measured variant: images/s on the wall clock and per CPU-second, and its baseline."""

    label: str
    wall: float
    cpu: float
    base: str


Line = Row | str  # a section's output: measured rows, and notes printed as they are


def generated_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Random-ish uint8 images (smooth fields plus noise): content does not change the speed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(count, 8, 8, 3), dtype=np.uint8)
    images = np.repeat(np.repeat(coarse, -(-size // 8), 1), -(-size // 8), 2)[:, :size, :size]
    noise = rng.integers(0, 16, size=images.shape, dtype=np.uint8)
    return images + noise


def best_rates(
    runs: list[Callable[[], int]],
    repeats: int,
    prepare: list[Callable[[], None] | None] | None = None,
) -> list[tuple[float, float]]:
    """(images per wall-second, images per CPU-second) of each run: the fastest of ``repeats``
    timed calls after a warm-up, on each clock. ``prepare[i]``, when given, runs untimed
    before each call of ``runs[i]``.

    The runs are interleaved (round after round), so a burst of load from other processes on a
    shared machine hits every variant alike instead of one of them.
    """
    prepare = prepare or [None] * len(runs)
    best = [(0.0, 0.0)] * len(runs)
    for round_number in range(repeats + 1):
        for index, run in enumerate(runs):
            if prepare[index] is not None:
                prepare[index]()
            started, started_cpu = time.perf_counter(), time.process_time()
            count = run()
            wall = count / (time.perf_counter() - started)
            cpu = count / max(time.process_time() - started_cpu, 1e-9)
            if round_number:  # round 0 is the warm-up
                best[index] = (max(best[index][0], wall), max(best[index][1], cpu))
    return best


def rows_from(labels: list[str], rates: list[tuple[float, float]], base: str) -> list[Row]:
    """Rows for measured ``rates``, all compared with the row labelled ``base``."""
    return [Row(label, wall, cpu, base) for label, (wall, cpu) in zip(labels, rates, strict=True)]


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


def loader_section(args) -> list[Line]:
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
        rates = best_rates([data_loader, batch_loader], args.repeats)
        return rows_from([base, f"loader {size}px: BatchLoader (memmap)"], rates, base)


def tuned(args, size: int) -> TuningResult:
    """The engine ``model.tuning`` chooses at ``size`` (measured once per run, then reused):
    what the app's scoring runs after ``flask model tune`` or its first job."""
    if size not in args.tuned and args.engine:
        engine, precision, batch = args.engine.split(":")
        args.tuned[size] = TuningResult(
            "cpu", size, engine, precision, int(batch), 0.0, 0.0, 0.0, {}, []
        )
    if size not in args.tuned:
        torch.manual_seed(0)
        model, _ = build_model(init="random")
        engines = ("fused", "jit", "compile") if args.compile else ("fused", "jit")
        args.tuned[size] = tune(
            model, meta_for(size), args.device, engines=engines, batch_sizes=args.batch_sizes
        )
    return args.tuned[size]


def inference_rows(args, size: int) -> list[Line]:
    """Model-only inference (uint8 array in, outputs out): every candidate the tuner timed,
    against eager fp32 timed in the same run, and which one it chose."""
    result = tuned(args, size)
    if args.engine:
        return [f"{size}px: --engine {args.engine} given, nothing tuned"]
    base = f"inference {size}px: eager fp32 (baseline)"
    rate = result.baseline_images_per_second
    lines: list[Line] = [Row(base, rate, float("nan"), base)]
    for m in result.measurements:
        label = f"inference {size}px: {m.engine} {m.precision} bs{m.batch_size}"
        if m.error:
            lines.append(f"{label}: failed ({m.error})")
            continue
        lines.append(Row(label, m.images_per_second, float("nan"), base))
        if not m.agrees:
            lines.append(
                f"{label}: disagrees with fp32 (p_fake {m.max_p_fake_error:.3g}): never chosen"
            )
        if m.engine == "compile":
            lines.append(f"{label}: compilation {m.setup_seconds:.1f} s, paid once per process")
    lines.append(
        f"{size}px chosen: {result.engine} {result.precision} bs{result.batch_size}, "
        f"{result.speedup:.2f}x eager fp32 (tuning took {result.seconds:.0f} s)"
    )
    return lines


def inference_section(args) -> list[Line]:
    """Inference at 224 px and at the demo size."""
    return inference_rows(args, 224) + inference_rows(args, args.demo_size)


def training_rows(args, size: int, count: int, batch: int) -> list[Line]:
    """Training images/s (transform included): eager fp32 against what the app's training runs
    at this size (``tune_training``: bf16 and the small-conv gradient only where faster)."""
    images = generated_images(count, size)
    labels = np.arange(count) % 2
    mean, std = channel_stats(images)
    device = pick_device(args.device)
    choice = tune_training(size, batch, device, stem=args.training_stem)
    fp32 = precision_policy(device, "fp32")
    baseline = replace(fp32, autocast_dtype=None, channels_last=False)
    chosen = precision_policy(device, choice["precision"])
    patch = choice["small_conv_grad"]
    variants = [
        ("eager fp32 (baseline)", baseline, False, False),
        (f"eager {fp32.name}", fp32, False, False),
        (
            f"measured choice: {chosen.name}{' + small-conv grad' if patch else ''}",
            chosen,
            patch,
            False,
        ),
    ]
    if args.compile_training:
        variants.append((f"compile {chosen.name}", chosen, patch, True))
    where = f"{size}px bs{batch}{network_words(args.training_stem)}"
    base = f"training {where}: eager fp32 (baseline)"
    runs = [
        _training_run(
            images, labels, (mean, std), batch, policy, patched, compiled, args.training_stem
        )
        for _, policy, patched, compiled in variants
    ]
    rates = best_rates(runs, args.repeats)
    names = [f"training {where}: {label}" for label, *_ in variants]
    rows = rows_from(names, rates, base)
    args.training[size] = (rows[0], rows[2])
    measured = ", ".join(f"{k} {v:.1f}" for k, v in choice["rates"].items())
    return [*rows, f"{size}px training choice from timed steps (img/s): {measured}"]


def _training_run(
    images, labels, stats, batch, policy, patched, compiled, stem="imagenet"
) -> Callable[[], int]:
    """A function training one pass over the images (its own model and optimizer)."""
    torch.manual_seed(0)
    model, _ = build_model(init="random", stem=stem)
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


def training_section(args) -> list[Line]:
    """Training at 224 px, at the demo size and at 32 px (CIFAKE), or at ``--training-sizes``;
    the network has ``--training-stem``."""
    sizes = args.training_sizes or [224, args.demo_size, 32]
    lines: list[Line] = []
    for size in sizes:
        if size >= 224:
            lines += training_rows(args, size, args.train224, 16)
        elif size <= 32:
            lines += training_rows(args, size, args.train_demo * 2, 128)
        else:
            lines += training_rows(args, size, args.train_demo, 64)
    return lines


def end_to_end_section(args) -> list[Line]:
    """The app's scoring job from stored images to Prediction rows, against the model alone.

    In a temporary instance: ``--e2e-images`` labelled images go through the real importer
    (which builds the pixel cache), a random-weight version is registered at each size, and
    each round times, on the same images,

    - model only: ``Predictor.predict`` on the images' pixels already in memory, eager fp32
      and the fast path (what ``scoring.get_predictor`` builds);
    - end to end: the real job runner (``jobs.core.execute``, what the worker calls) running
      the ``predict`` job: pixel cache reads, the network, the K-fold out-of-sample and the
      out-of-distribution scores, and the Prediction rows written and committed; once with
      the eager fp32 network in the process's model cache and once with the fast path.

    The job reports its seconds per stage, so the network and the post-processing are shown
    apart (the median of the timed rounds).
    """
    from bench_app import fresh_app, write_labelled_images

    with tempfile.TemporaryDirectory(prefix="model-bench-") as folder:
        source = write_labelled_images(
            Path(folder) / "images", args.e2e_images, args.e2e_source == "cifake"
        )
        app = fresh_app(Path(folder) / "instance")
        with app.app_context():
            from webapp.services.importing.importer import import_path

            report = import_path(Path(folder) / "images", dataset="bench", cache_size=224)
            lines: list[Line] = [f"{source}: {report.imported} imported"]
            for size in (224, args.demo_size):
                lines += end_to_end_rows(args, app, size)
        return lines


def end_to_end_rows(args, app, size: int) -> list[Line]:
    """Model-only and end-to-end rates at one input size, with the stage breakdown."""
    from bench_app import register_version
    from sqlalchemy import delete, select

    from webapp.extensions import db
    from webapp.jobs.core import execute
    from webapp.models import Image, Job, JobState, Prediction
    from webapp.services.importing.pixels import cache_for, open_cache
    from webapp.services.training import scoring

    version = register_version(f"bench-{size}", size)
    version_id, version_name = version.id, version.name
    ids = list(db.session.scalars(select(Image.id).order_by(Image.id)))
    open_cache(size, ids)  # what the import did for its own size, outside the timing
    pixels = cache_for(size).read(ids)
    choice = tuned(args, size)
    fast = Predictor.from_checkpoint(
        version.checkpoint_path,
        device=app.config["MODEL_DEVICE"],
        precision=choice.precision,
        engine=choice.engine,
        batch_size=choice.batch_size,
    )
    baseline_policy = replace(fast.policy, autocast_dtype=None, channels_last=False)
    eager = Predictor(fast.model, fast.meta, engine="eager", policy=baseline_policy)
    stages: dict[str, list[dict]] = {"eager": [], "fast": []}

    def model_only(predictor) -> Callable[[], int]:
        return lambda: len(predictor.predict(pixels))

    def prepare_job(predictor) -> Callable[[], None]:
        def prepare() -> None:
            db.session.execute(delete(Prediction).where(Prediction.model_version_id == version_id))
            job = Job(kind="predict", params={"version": version_name}, progress={})
            db.session.add(job)
            db.session.commit()
            pending.append(job.id)
            scoring.use_predictor(db.session.get(type(version), version_id), predictor)

        return prepare

    def scoring_job(name: str) -> Callable[[], int]:
        def run() -> int:
            execute(pending[-1])
            job = db.session.get(Job, pending[-1])
            if job.state != JobState.SUCCEEDED or job.result["scored"] != len(ids):
                raise RuntimeError(f"scoring job {job.state}: {job.error or job.result}")
            stages[name].append(job.result["seconds"])
            return len(ids)

        return run

    pending: list[int] = []
    labels = [
        f"model only {size}px: eager fp32 (baseline)",
        f"model only {size}px: fast path ({fast.engine} {fast.policy.name} bs{fast.batch_size})",
        f"end to end {size}px: eager fp32",
        f"end to end {size}px: fast path",
    ]
    rates = best_rates(
        [model_only(eager), model_only(fast), scoring_job("eager"), scoring_job("fast")],
        args.repeats,
        [None, None, prepare_job(eager), prepare_job(fast)],
    )
    rows = rows_from(labels[:2], rates[:2], labels[0]) + rows_from(labels[2:], rates[2:], labels[1])
    args.end_to_end[size] = rows
    return rows + end_to_end_notes(size, rows, stages, len(ids))


def end_to_end_notes(size: int, rows: list[Row], stages: dict, count: int) -> list[str]:
    """The two ratios the targets are about, and where the job's time went."""
    eager_model, fast_model, eager_job, fast_job = rows
    notes = [
        f"{size}px end to end fast / model only fast: {fast_job.wall / fast_model.wall:.2f}x "
        f"wall, {fast_job.cpu / fast_model.cpu:.2f}x CPU (target >= 0.8)",
        f"{size}px end to end fast / end to end eager fp32: {fast_job.wall / eager_job.wall:.2f}x "
        f"wall, {fast_job.cpu / eager_job.cpu:.2f}x CPU",
    ]
    for name, runs in stages.items():
        timed = runs[1:]  # the first is the warm-up
        median = {key: float(np.median([run[key] for run in timed])) for key in timed[0]}
        total = sum(median.values())
        parts = ", ".join(f"{key} {value:.2f} s" for key, value in median.items())
        notes.append(
            f"{size}px job stages, {name} network, {count} images: {parts}; network "
            f"{median['network'] / total:.0%} of the job, post-processing "
            f"{(total - median['network']) / total:.0%}"
        )
    network = float(np.median([run["network"] for run in stages["fast"][1:]]))
    notes.append(
        f"{size}px the job's network stage alone (cache reads, network, features file), fast "
        f"path: {count / network:.1f} img/s wall = {count / network / fast_model.wall:.2f}x "
        "model only fast"
    )
    return notes


def load_average() -> str:
    """The machine's load: other work on the same cores moves every wall-clock figure."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


SECTIONS: dict[str, Callable[[argparse.Namespace], list[Line]]] = {
    "loader": loader_section,
    "inference": inference_section,
    "end_to_end": end_to_end_section,
    "training": training_section,
}
"""Section name -> function(args) returning rows and notes, in the order they run."""


def print_rows(lines: list[Line]) -> None:
    """One line per row with images/s on both clocks and the ratios to its baseline row."""
    rows = {line.label: line for line in lines if isinstance(line, Row)}
    for line in lines:
        if isinstance(line, str):
            print(f"  {line}", flush=True)
            continue
        base = rows.get(line.base)
        wall_ratio = line.wall / base.wall if base and base.wall else float("nan")
        cpu_ratio = line.cpu / base.cpu if base and base.cpu else float("nan")
        cpu = "" if np.isnan(line.cpu) else f" | {line.cpu:8.1f} img/CPU-s {cpu_ratio:5.2f}x"
        print(f"  {line.label:58s} {line.wall:8.1f} img/s {wall_ratio:5.2f}x{cpu}", flush=True)


def targets(args) -> list[str]:
    """Issue 11's targets, each with what this run reached (ratios within this run)."""
    bf16_units = cpu_has_fast_bf16()
    kind = "bf16 matrix units" if bf16_units else "no bf16 units (AVX2-class)"
    lines = [f"CPU: {cpu_description()}: {kind}"]
    if 224 in args.end_to_end:
        eager_model, fast_model, eager_job, fast_job = args.end_to_end[224]
        want = 6.0 if bf16_units else 1.7
        reached = fast_job.wall / eager_job.wall
        lines.append(_target(f"inference end to end 224px >= {want}x eager fp32", reached, want))
        ratio = fast_job.wall / fast_model.wall
        lines.append(_target("inference end to end 224px >= 0.8x model-only fast path", ratio, 0.8))
    for size, (baseline, chosen) in sorted(args.training.items()):
        want = 3.0 if bf16_units and size == 224 else 1.0
        what = f">= {want}x eager fp32" if want > 1 else "never slower than eager fp32"
        lines.append(
            _target(f"training {size}px {what}", chosen.wall / baseline.wall, want, slack=0.95)
        )
    return lines


def _target(what: str, reached: float, want: float, slack: float = 1.0) -> str:
    """``slack`` < 1 forgives timing noise for a 'never slower' target (within 5%)."""
    verdict = "met" if reached >= want * slack else "NOT met"
    return f"target {what}: reached {reached:.2f}x: {verdict}"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--demo-size", type=int, default=64)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[16, 64], help="inference batches to try"
    )
    parser.add_argument("--train224", type=int, default=32, help="images per training pass, 224")
    parser.add_argument("--train-demo", type=int, default=256, help="images per pass, demo size")
    parser.add_argument("--e2e-images", type=int, default=256, help="images, end to end")
    parser.add_argument(
        "--e2e-source",
        choices=("cifake", "generated"),
        default="cifake",
        help="end-to-end images: a CIFAKE slice when the zip is present, else generated",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="leave torch.compile out of the inference candidates (it compiles for minutes)",
    )
    parser.add_argument(
        "--compile-training", action="store_true", help="also time torch.compile in training"
    )
    parser.add_argument(
        "--training-stem",
        choices=STEMS,
        default="imagenet",
        help="the network the training section times (the tuner measures each stem apart)",
    )
    parser.add_argument(
        "--training-sizes", type=int, nargs="+", help="training section sizes (224, demo, 32)"
    )
    parser.add_argument(
        "--engine",
        help="ENGINE:PRECISION:BATCH (e.g. fused:bf16:16): the fast path end to end without "
        "tuning first (the inference section then lists nothing)",
    )
    args = parser.parse_args(argv)
    args.tuned, args.training, args.end_to_end = {}, {}, {}
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    print(describe(configure_threads(args.threads)), flush=True)
    device = pick_device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"CPU {cpu_description()}, fast bf16 units {cpu_has_fast_bf16()}",
        flush=True,
    )
    started = time.perf_counter()
    print(load_average(), flush=True)
    for name in args.sections:
        print(f"[{name}]", flush=True)
        print_rows(SECTIONS[name](args))
    print("[targets]", flush=True)
    for line in targets(args):
        print(f"  {line}", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s; {load_average()}")


if __name__ == "__main__":
    main()
