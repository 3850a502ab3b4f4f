"""Choosing the inference engine by measuring it on this machine, not by guessing from CPU flags.

For one (device, input size), ``tune`` times candidate engines (eager; batch norm fused; the
fused network traced by TorchScript; ``torch.compile`` with freezing), each in fp32 and in bf16
autocast, at a batch size or two, on the same generated images. It keeps the fastest candidate
whose outputs agree with eager fp32 within the tolerance of its precision (``TOLERANCES``), and
reports every measurement, the eager fp32 baseline and what building each engine cost (for
``compile`` that is the compilation, which a job pays once per process).

Why measure: bf16 autocast is several times faster on a CPU with AMX but several times slower on
an AVX2-only one; eager bf16 can lose to eager fp32 even with AMX (the casts are not fused), while
compiled bf16 wins by far; the best batch size moves with the cache sizes. A flag-based guess was
wrong on both CPU kinds this project runs on.

The result is plain data (``TuningResult.to_dict``), stored by the app in its instance folder
and reused by every job on the same machine (``fingerprint`` says which machine it was).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from model.config import network_words
from model.cpu_conv import patch_small_convolutions
from model.device import pick_device, precision_policy
from model.machine import machine_fingerprint
from model.network import OUTPUT_STRIDE, build_model
from model.predict import Predictor

PRECISIONS = ("fp32", "bf16")
ENGINES = ("fused", "jit", "compile")
BATCH_SIZES = (16, 64)


@dataclass(frozen=True)
class Tolerance:
    """How far a candidate's outputs may be from eager fp32 on the same images."""

    logit_atol: float
    logit_rtol: float
    p_fake_atol: float

    def check(self, reference, candidate) -> tuple[float, float, bool]:
        """(largest logit error, largest p_fake error, within tolerance) of two outputs."""
        logit_error = np.abs(candidate.logits - reference.logits)
        allowed = self.logit_atol + self.logit_rtol * np.abs(reference.logits)
        p_fake_error = float(np.abs(candidate.p_fake - reference.p_fake).max())
        agrees = bool((logit_error <= allowed).all() and p_fake_error <= self.p_fake_atol)
        return float(logit_error.max()), p_fake_error, agrees


TOLERANCES = {
    # Folding batch norm, tracing or compiling reorders float arithmetic, nothing more.
    "fp32": Tolerance(logit_atol=1e-3, logit_rtol=1e-3, p_fake_atol=1e-4),
    # bf16 keeps 8 bits of mantissa: what the bf16 tests in tests/model state.
    "bf16": Tolerance(logit_atol=0.1, logit_rtol=0.02, p_fake_atol=0.03),
}


@dataclass(frozen=True)
class Candidate:
    """One way to run the network: engine, precision and images per forward pass."""

    engine: str
    precision: str
    batch_size: int

    @property
    def label(self) -> str:
        """``fused bf16 bs64`` and the like, for logs and tables."""
        return f"{self.engine} {self.precision} bs{self.batch_size}"


@dataclass
class Measurement:
    """What one candidate did: speed, build cost, distance from eager fp32, or why it failed."""

    engine: str
    precision: str
    batch_size: int
    images_per_second: float = 0.0
    setup_seconds: float = 0.0
    max_logit_error: float = float("nan")
    max_p_fake_error: float = float("nan")
    agrees: bool = False
    error: str | None = None

    @property
    def usable(self) -> bool:
        """Ran, and agreed with eager fp32 within its precision's tolerance."""
        return self.error is None and self.agrees


@dataclass
class TuningResult:
    """The chosen engine for one (device, input size) and everything measured to choose it."""

    device: str
    image_size: int
    engine: str
    precision: str
    batch_size: int
    images_per_second: float
    baseline_images_per_second: float
    seconds: float
    fingerprint: dict
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        """Chosen engine's images/s over eager fp32's, measured in the same run."""
        return self.images_per_second / max(self.baseline_images_per_second, 1e-9)

    @property
    def compile_seconds(self) -> float:
        """Seconds spent building compiled engines (what a first job pays for them)."""
        return sum(m.setup_seconds for m in self.measurements if m.engine == "compile")

    def to_dict(self) -> dict:
        """JSON-ready form (``from_dict`` reads it back)."""
        values = asdict(self)
        values["speedup"] = round(self.speedup, 3)
        values["compile_seconds"] = round(self.compile_seconds, 2)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TuningResult:
        """The result ``to_dict`` wrote."""
        values = {k: v for k, v in values.items() if k not in {"speedup", "compile_seconds"}}
        measurements = [Measurement(**m) for m in values.pop("measurements", [])]
        return cls(**values, measurements=measurements)


def random_network(size: int) -> tuple[nn.Module, dict]:
    """A random-weight ResNet18 and checkpoint meta at ``size`` px: what speed is measured on
    when no trained network of that size is at hand (speed does not depend on the weights)."""
    model, _ = build_model(init="random")
    meta = {
        "image_size": size,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "temperature": 1.0,
        "stem": "imagenet",
        "architecture": "resnet18",
        "class_order": ["real", "fake"],
        "init_weights": "random",
    }
    return model, meta


def tuning_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Deterministic uint8 images with smooth structure and noise (content does not change
    the speed; structure keeps the activations, and so the comparison, realistic)."""
    rng = np.random.default_rng(seed)
    cells = max(2, size // 8)
    coarse = rng.integers(0, 256, size=(count, cells, cells, 3), dtype=np.uint8)
    repeat = -(-size // cells)
    images = np.repeat(np.repeat(coarse, repeat, 1), repeat, 2)[:, :size, :size]
    return (images + rng.integers(0, 24, size=images.shape, dtype=np.uint8)).astype(np.uint8)


def tune(
    model: nn.Module,
    meta: dict,
    device: str | torch.device = "auto",
    *,
    engines: Iterable[str] = ENGINES,
    precisions: Iterable[str] = PRECISIONS,
    batch_sizes: Iterable[int] = BATCH_SIZES,
    batches: int = 2,
    repeats: int = 2,
    log: Callable[[str], None] | None = None,
) -> TuningResult:
    """Time the candidates for ``meta["image_size"]`` on ``device`` and choose the fastest that
    agrees with eager fp32 (see the module docstring).

    Each candidate scores ``batches`` batches of the largest batch size; candidates are raced in
    ``repeats`` rounds beside the baseline and each keeps its fastest pass. ``fused`` runs at
    every batch size; ``jit`` and ``compile`` only at the batch size that was fastest for
    ``fused`` in the same precision, which keeps the compilations to one per precision.
    """
    started = time.perf_counter()
    log = log or (lambda message: None)
    device = pick_device(str(device)) if not isinstance(device, torch.device) else device
    engines, precisions = list(engines), list(precisions)
    sizes = sorted(set(batch_sizes))
    images = tuning_images(max(sizes) * batches, int(meta["image_size"]))
    timer = _Timer(model, meta, device, images)
    baseline = timer.baseline(max(sizes))
    fused = []
    if "fused" in engines:
        fused = [timer.prepare(Candidate("fused", p, b)) for p in precisions for b in sizes]
    timer.race([baseline, *fused], repeats)
    later, best_fused = [], []
    for precision in precisions:
        own = [entry for entry in fused if entry.measurement.precision == precision]
        best = _best([entry.measurement for entry in own])
        best_fused += [entry for entry in own if entry.measurement is best]
        batch = best.batch_size if best else max(sizes)
        later += [
            timer.prepare(Candidate(engine, precision, batch))
            for engine in engines
            if engine != "fused"
        ]
    if later:  # raced again beside the baseline and the fused winners: same moment, same load
        timer.race([baseline, *best_fused, *later], repeats)
    measurements = [entry.measurement for entry in [*fused, *later]]
    baseline_rate = baseline.measurement.images_per_second
    log(f"eager fp32 (baseline) bs{max(sizes)}: {baseline_rate:.1f} img/s")
    for measurement in measurements:
        log(_describe(measurement))
    chosen = _best(measurements)
    if chosen is None:  # nothing agreed: the network as trained is always right
        chosen = baseline.measurement
    return TuningResult(
        device=str(device),
        image_size=int(meta["image_size"]),
        engine=chosen.engine,
        precision=chosen.precision,
        batch_size=chosen.batch_size,
        images_per_second=chosen.images_per_second,
        baseline_images_per_second=baseline_rate,
        seconds=round(time.perf_counter() - started, 2),
        fingerprint=machine_fingerprint(device),
        measurements=measurements,
    )


def _best(measurements: list[Measurement]) -> Measurement | None:
    usable = [m for m in measurements if m.usable]
    return max(usable, key=lambda m: m.images_per_second) if usable else None


def _describe(measurement: Measurement) -> str:
    label = Candidate(measurement.engine, measurement.precision, measurement.batch_size).label
    if measurement.error:
        return f"{label}: failed ({measurement.error})"
    verdict = "agrees" if measurement.agrees else "DISAGREES"
    return (
        f"{label}: {measurement.images_per_second:.1f} img/s, built in "
        f"{measurement.setup_seconds:.1f} s, {verdict} with fp32 (logits "
        f"{measurement.max_logit_error:.2g}, p_fake {measurement.max_p_fake_error:.2g})"
    )


@dataclass
class _Entry:
    """A candidate in the race: its measurement so far and its predictor (None if it failed)."""

    measurement: Measurement
    predictor: Predictor | None
    best_seconds: float = float("inf")


class _Timer:
    """Builds candidates, checks them against the fp32 reference, and races them.

    A race times every entry once per round, round after round, and keeps each entry's fastest
    pass: on a shared machine the load then falls on all candidates alike, instead of on
    whichever happened to be timed while another process was busy.
    """

    def __init__(self, model, meta, device, images):
        self.model, self.meta, self.images = model, meta, images
        self.policy = precision_policy(device, "fp32")
        self.reference = None

    def baseline(self, batch_size: int) -> _Entry:
        """Eager fp32 in the contiguous layout (the network as trained): also the reference
        every candidate's outputs are compared with."""
        policy = replace(self.policy, channels_last=False)
        predictor = Predictor(self.model, self.meta, engine="eager", policy=policy)
        self.reference = predictor.predict(self.images, batch_size=batch_size)
        measurement = Measurement("eager", "fp32", batch_size, agrees=True)
        measurement.max_logit_error = measurement.max_p_fake_error = 0.0
        return _Entry(measurement, predictor)

    def prepare(self, candidate: Candidate) -> _Entry:
        """Build and warm up one candidate (compiling, for ``compile``) and compare its outputs
        with the reference; a failure is recorded, never raised."""
        measurement = Measurement(candidate.engine, candidate.precision, candidate.batch_size)
        try:
            started = time.perf_counter()
            predictor = Predictor(
                self.model,
                self.meta,
                engine=candidate.engine,
                policy=precision_policy(self.policy.device, candidate.precision),
                batch_size=candidate.batch_size,
            )
            predictor.predict(self.images[: candidate.batch_size])  # warm-up
            measurement.setup_seconds = round(time.perf_counter() - started, 3)
            output = predictor.predict(self.images)
            tolerance = TOLERANCES[candidate.precision]
        except Exception as error:  # an engine that cannot run here is simply not chosen
            measurement.error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            return _Entry(measurement, None)
        measurement.max_logit_error, measurement.max_p_fake_error, measurement.agrees = (
            tolerance.check(self.reference, output)
        )
        return _Entry(measurement, predictor)

    def race(self, entries: list[_Entry], rounds: int) -> None:
        """Time every working entry once per round; each keeps its fastest pass."""
        for _ in range(max(1, rounds)):
            for entry in entries:
                if entry.predictor is None:
                    continue
                started = time.perf_counter()
                entry.predictor.predict(self.images, batch_size=entry.measurement.batch_size)
                entry.best_seconds = min(entry.best_seconds, time.perf_counter() - started)
                entry.measurement.images_per_second = len(self.images) / entry.best_seconds


TRAINING_METHOD = 2
"""Stored training choices of an older method (1: one pass of two steps) are measured again."""

TRAINING_MARGIN = 1.05
"""A variant other than plain fp32 must train at least this much faster to be chosen: timed steps
move by tens of percent with load, and a tie is no reason to leave fp32's numerics."""


def tune_training(
    image_size: int,
    batch_size: int,
    device: str | torch.device = "auto",
    steps: int = 2,
    log: Callable[[str], None] | None = None,
    rounds: int = 3,
    stem: str = "imagenet",
    residual: str = "none",
) -> dict:
    """Training precision (fp32 or bf16 autocast) and small-convolution gradient for one network
    (``stem``, ``residual``: ``model.network.build_model``), input size and batch, chosen by
    timing optimizer steps of each variant (random weights, fixed inputs; one warm-up step each
    first). The network matters as much as the size: at 32 px and batch 256 on the Intel AMX
    machine bf16 lost with the ImageNet stem (280 against 393 img/s in fp32) and won with the
    medium stem, whose residual stages run at twice the resolution (163 against 108; 183 with
    the small-conv gradient).

    The variants take turns, ``rounds`` times, each timing its fastest of ``steps`` steps per
    turn, and a variant's rate is the median of its turns: a burst of load then slows one turn
    of each rather than one variant (a single pass of two steps once chose bf16 with the
    small-conv gradient for a run that then trained slower than fp32). A variant replaces plain
    fp32 only when it
    is ``TRAINING_MARGIN`` faster. bf16 is kept only where it is faster at this size (at 32 px
    the casts can cost more than the matrix units save); the im2col weight gradient of
    ``model.cpu_conv`` is tried only where the last stage's output is at most 2x2 pixels, the
    only place it can change anything.
    """
    log = log or (lambda message: None)
    device = pick_device(str(device)) if not isinstance(device, torch.device) else device
    last_stage = image_size / OUTPUT_STRIDE[stem]
    small_conv_applies = device.type == "cpu" and last_stage <= 2
    where = f"{image_size}px bs{batch_size}{network_words(stem, residual)}"
    variants = [(precision, False) for precision in PRECISIONS]
    if small_conv_applies:
        variants += [(precision, True) for precision in PRECISIONS]
    runners, turns = {}, {}
    for precision, small_conv in variants:
        label = f"{precision}{' + small-conv grad' if small_conv else ''}"
        try:
            runners[label] = _TrainingStep(
                image_size, batch_size, device, precision, small_conv, stem, residual
            )
        except Exception as error:  # a precision this device cannot train in is not chosen
            log(f"training {where} {label}: failed ({error})")
    for _ in range(max(1, rounds)):
        for label, runner in list(runners.items()):
            try:
                turns.setdefault(label, []).append(runner.rate(steps))
            except Exception as error:
                log(f"training {where} {label}: failed ({error})")
                runners.pop(label)
                turns.pop(label, None)
    rates = {label: float(np.median(values)) for label, values in turns.items()}
    for label, rate in rates.items():
        log(f"training {where} {label}: {rate:.1f} img/s")
    best = choose_training_variant(rates)
    return {
        "precision": best.split(" ")[0],
        "small_conv_grad": "small-conv" in best,
        "images_per_second": rates.get(best, 0.0),
        "baseline_images_per_second": rates.get("fp32", 0.0),
        "rates": rates,
        "image_size": image_size,
        "batch_size": batch_size,
        "stem": stem,
        "residual": residual,
        "method": TRAINING_METHOD,
        "fingerprint": machine_fingerprint(device),
    }


def choose_training_variant(rates: dict[str, float]) -> str:
    """The fastest variant, unless it beats plain fp32 by less than ``TRAINING_MARGIN``."""
    if not rates:
        return "fp32"
    best = max(rates, key=rates.get)
    if "fp32" in rates and rates[best] < TRAINING_MARGIN * rates["fp32"]:
        return "fp32"
    return best


class _TrainingStep:
    """One training variant, built once and warmed up, timed turn by turn."""

    def __init__(self, image_size, batch_size, device, precision, small_conv, stem, residual):
        self.policy = precision_policy(device, precision)
        torch.manual_seed(0)
        model, _ = build_model(init="random", stem=stem, residual=residual)
        if small_conv:
            patch_small_convolutions(model)
        self.model = model.to(self.policy.device, memory_format=self.policy.memory_format())
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        inputs = torch.randn(batch_size, 3, image_size, image_size, device=self.policy.device)
        self.inputs = inputs.contiguous(memory_format=self.policy.memory_format())
        self.targets = torch.arange(batch_size, device=self.policy.device) % 2
        self.step()  # warm-up

    def step(self) -> float:
        """One optimizer step; its seconds."""
        started = time.perf_counter()
        with self.policy.autocast():
            loss = F.cross_entropy(self.model(self.inputs), self.targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.policy.device.type == "cuda":
            torch.cuda.synchronize(self.policy.device)
        return time.perf_counter() - started

    def rate(self, steps: int) -> float:
        """Images per second of the fastest of ``steps`` steps."""
        return len(self.targets) / min(self.step() for _ in range(max(1, steps)))
