"""Training: a configuration, a seeded loop with a schedule and a time budget, and calibration.

``train(...)`` takes uint8 image arrays and 0/1 labels, trains the ResNet18 of ``network``,
evaluates on the validation split each epoch, fits the temperature on the final validation logits
and returns everything a checkpoint needs. It reports progress through ``on_progress`` and stops
with ``TrainingStopped`` as soon as ``should_stop()`` says so.

On CPU the same data and configuration give the same weights and metrics (seeded model, data
order and augmentation; deterministic algorithms), unless ``max_minutes`` makes the schedule
depend on wall-clock time.

The same loop runs distributed (DistributedDataParallel, one process per rank, started by
torchrun through ``model.distributed``) when ``train`` gets a ``DistributedContext``:
``batch_size`` stays the global batch, each rank takes its share of every global batch with the
augmentation it would get in one process, batch norm uses the global batch's statistics, and
rank 0 alone validates, calibrates and reports. The ranks finish with identical weights.

The configuration and its named recipes are ``model.config``. Why this module is still over 400
lines: the schedule, the epoch loop, the pooled crop validation, the progress reporter and the
calibration at the end are private parts of ``train`` that share its state, and each is short.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from model.calibration import apply_temperature, fit_temperature
from model.config import TrainConfig
from model.cpu_conv import patch_small_convolutions, unpatch_small_convolutions
from model.crops import CropView, NativeImages, fill_colour, pool_logits
from model.data import BatchLoader, eval_transform, train_transform
from model.device import Policy, pick_device, precision_policy
from model.ema import WeightEMA
from model.engine import TrainingStopped, evaluate, train_one_epoch
from model.margins import MarginRecorder
from model.metrics import classification_metrics
from model.network import ARCHITECTURE, build_model
from model.parallel import DistributedContext, plain_batch_norm, sync_batch_norm

__all__ = ["TrainResult", "TrainingStopped", "train"]


@dataclass
class TrainResult:
    """What a run produced: the trained network (eval mode) and everything about it."""

    model: nn.Module
    config: TrainConfig
    history: list[dict]
    temperature: float
    init_weights: str
    val_metrics: dict | None
    mean: list[float]
    std: list[float]
    val_logits: np.ndarray | None = None
    margins: np.ndarray | None = None  # each training image's mean margin (record_margins)
    margins_by_epoch: np.ndarray | None = None  # (epochs, images): each epoch's mean margins
    seconds: float = 0.0
    policy: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def val_p_fake(self) -> np.ndarray | None:
        """Calibrated p_fake of the validation images, in the order ``train`` got them (None
        without validation images): what the run's own metrics were measured on."""
        if self.val_logits is None:
            return None
        return apply_temperature(self.val_logits, self.temperature)

    def checkpoint_meta(self, train_set_sha256: str = "", **more) -> dict:
        """The ``meta`` dict for ``checkpoint.save_checkpoint``: enough to rebuild and predict."""
        return {
            "architecture": ARCHITECTURE,
            "stem": self.config.stem,
            "residual": self.config.residual,
            "image_size": self.config.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_order": ["real", "fake"],
            "temperature": self.temperature,
            "train_args": self.config.to_dict(),
            "metrics": {"val": self.val_metrics},
            "train_set_sha256": train_set_sha256,
            "init_weights": self.init_weights,
            "history": self.history,
            "train_seconds": self.seconds,
            "policy": self.policy,
            "tta": self.config.tta,
            "input": self.config.input_settings().to_dict(),
            **more,
        }


def _check_inputs(images, labels, what: str) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{what} images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels")
    if len(labels) and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{what} labels must be 0 (real) or 1 (fake)")


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer; batch-norm weights and biases get no weight decay."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_at(config: TrainConfig, progress: float) -> float:
    """The learning rate at ``progress`` in [0, 1] of the run (steps or time, whichever leads)."""
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    warmup = max(config.warmup_fraction, 1e-6)
    if progress < warmup:  # one-cycle: linear warm-up from lr/25, then cosine down to ~0
        return config.lr * (0.04 + 0.96 * progress / warmup)
    rest = (progress - warmup) / max(1 - warmup, 1e-6)
    return config.lr * (0.5 * (1 + math.cos(math.pi * min(rest, 1.0))) + 1e-4)


class _Schedule:
    """Sets the learning rate before each step; says when a time budget is spent."""

    def __init__(self, config: TrainConfig, optimizer, total_steps: int, agree=None):
        self.config, self.optimizer, self.total_steps = config, optimizer, max(total_steps, 1)
        self.budget_s = config.max_minutes * 60 if config.max_minutes else None
        self.started = time.perf_counter()
        self.started_cpu = time.process_time()
        self.step = 0
        # Distributed runs: every rank must end the run at the same step, so the clock that
        # decides is the slowest rank's (``agree`` is a max over ranks).
        self.agree = agree

    def elapsed(self) -> float:
        """Seconds used so far on the budget's clock."""
        if self.config.budget_clock == "cpu":
            return (time.process_time() - self.started_cpu) / max(torch.get_num_threads(), 1)
        return time.perf_counter() - self.started

    def progress(self) -> float:
        """Fraction of the run done: by steps, or by the clock when that is further."""
        done = self.step / self.total_steps
        if self.budget_s:
            elapsed = self.elapsed() if self.agree is None else self.agree(self.elapsed())
            done = max(done, elapsed / self.budget_s)
        return done

    def __call__(self) -> bool:
        progress = self.progress()
        if self.budget_s and progress >= 1.0:
            return False
        lr = lr_at(self.config, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.step += 1
        return True

    def spent(self) -> bool:
        """True when the time budget (if any) is used up."""
        return bool(self.budget_s) and self.progress() >= 1.0


@contextlib.contextmanager
def _deterministic(enabled: bool):
    """Deterministic algorithms for the run, restoring the process-wide setting afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


@contextlib.contextmanager
def _threads(count: int | None):
    """Run with ``count`` torch CPU threads, restoring the previous number afterwards."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    """Seed PyTorch and NumPy's global generators (the loader has its own, seeded too)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def train(
    train_images,
    train_labels,
    val_images,
    val_labels,
    config: TrainConfig,
    mean,
    std,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    distributed: DistributedContext | None = None,
    record_margins: bool = False,
) -> TrainResult:
    """Train a ResNet18 on uint8 (N, S, S, 3) images with 0/1 labels (0 = real, 1 = fake).

    ``mean``/``std`` are per-channel on the 0..1 scale (the data audit's statistics). The
    validation split may be empty: then no temperature is fitted (T = 1) and metrics are None.
    With ``distributed`` every rank calls this with the same arguments inside an initialised
    process group; only rank 0's result has validation metrics and a fitted temperature.
    ``record_margins``: the result's ``margins`` hold each training image's mean margin over
    the run (``model.margins``: where label mistakes show), in one process only.
    """
    if record_margins and distributed is not None:
        raise ValueError("margins are recorded in one process: leave out distributed training")
    if config.input_mode == "crops":  # every rank the same views: each takes its own rows
        train_images, val_images = crop_views(train_images, val_images, config, mean)
    _check_inputs(train_images, train_labels, "train")
    if val_images is not None and len(val_images):
        _check_inputs(val_images, val_labels, "val")
    if len(train_images) < 2:
        raise ValueError("training needs at least two images")
    device = pick_device(config.device) if distributed is None else distributed.device
    config = _measured_precision(config, device, distributed)
    policy = precision_policy(device, config.precision)
    if config.channels_last is not None:
        policy = replace(policy, channels_last=config.channels_last)
    deterministic = config.deterministic and device.type == "cpu"
    if distributed is not None:
        on_progress, should_stop = _for_rank(distributed, on_progress, should_stop)
    with _deterministic(deterministic), _threads(config.threads):
        return _run(
            train_images,
            train_labels,
            val_images,
            val_labels,
            config,
            mean,
            std,
            policy,
            on_progress,
            should_stop,
            distributed,
            record_margins,
        )


def _measured_precision(config: TrainConfig, device, distributed) -> TrainConfig:
    """``precision="auto"`` on a CPU: bf16 and the small-convolution gradient only where a few
    timed steps of this network at this size and batch show they are faster
    (``model.tuning.tune_training``).
    Ranks of a distributed run must agree, so there ``auto`` stays the device's default."""
    if config.precision != "auto" or device.type != "cpu" or distributed is not None:
        return config
    from model.tuning import tune_training

    choice = tune_training(
        config.image_size, config.batch_size, device, stem=config.stem, residual=config.residual
    )
    return replace(
        config,
        precision=choice["precision"],
        small_conv_grad=config.small_conv_grad and choice["small_conv_grad"],
    )


def resolved_precision(config: TrainConfig) -> TrainConfig:
    """``config`` with ``precision="auto"`` resolved as ``train`` would resolve it (timed steps
    on a CPU): for callers that train several networks of one recipe and want them all in one
    precision (``model.margins``, ``model.out_of_fold``), since two timings may choose apart."""
    return _measured_precision(config, pick_device(config.device), None)


def _for_rank(distributed: DistributedContext, on_progress, should_stop):
    """Progress from rank 0 only; a stop request any rank sees stops every rank at once."""
    if not distributed.is_main:
        on_progress = None
    if should_stop is None:
        return on_progress, None

    def any_rank_asked() -> bool:
        return distributed.any(should_stop())

    return on_progress, any_rank_asked


def _run(
    train_images,
    train_labels,
    val_images,
    val_labels,
    config,
    mean,
    std,
    policy,
    on_progress,
    should_stop,
    distributed=None,
    record_margins=False,
) -> TrainResult:
    seed_everything(config.seed)
    model, init_used = build_model(
        config.init,
        config.weights_path,
        config.weights_sha256,
        config.stem,
        config.zero_init_residual,
        config.residual,
    )
    model = model.to(policy.device, memory_format=policy.memory_format())
    if config.small_conv_grad and policy.device.type == "cpu":
        patch_small_convolutions(model)
    loader, val_loader = _loaders(
        train_images, train_labels, val_images, val_labels, config, mean, std, distributed
    )
    network = _training_network(model, policy, distributed)
    optimizer = _optimizer(model, config)
    agree = distributed.max if distributed is not None else None
    schedule = _Schedule(config, optimizer, config.epochs * len(loader), agree)
    reporter = _Reporter(on_progress, config, len(loader) * loader.batch_size, schedule)
    if distributed is not None:
        reporter.images_scale = distributed.world_size
    ema = WeightEMA(model, config.ema_decay) if config.ema_decay else None
    loop = _Loop(model, network, loader, val_loader, optimizer, schedule, policy, config, reporter)
    loop.ema = ema
    loop.margins = MarginRecorder(len(train_images)) if record_margins else None
    history, last_eval = _epochs(loop, should_stop, distributed)
    if ema is not None:  # the averaged weights are the result: measure those
        ema.copy_to(model)
        last_eval = None
    if val_loader is not None and config.input_mode == "crops":  # measured as it will score
        last_eval = pooled_evaluate(model, val_images, val_labels, config, mean, std, policy)
    elif val_loader is not None and last_eval is None:
        last_eval = evaluate(model, val_loader, policy, tta=config.tta == "flip")
    if distributed is not None:
        plain_batch_norm(model)
        policy_name = f"{policy.name} ddp x{distributed.world_size} {distributed.backend}"
    else:
        policy_name = policy.name
    result = _finish(model, config, history, init_used, last_eval, mean, std, policy_name, schedule)
    if loop.margins is not None:
        result.margins = loop.margins.mean()
        result.margins_by_epoch = loop.margins.by_epoch()
    return result


def crop_views(train_images, val_images, config: TrainConfig, mean):
    """Training on crops: a fresh random crop of each training image per read, and the centre
    crop of each validation image for the per-epoch check. The images may be a uint8 array, a
    list of (H, W, 3) arrays of any sizes, or ``NativeImages`` decoded on demand."""
    mode, fill = config.input_settings(), fill_colour(mean)
    train_view = CropView(NativeImages.of(train_images, mode), "random", fill, seed=config.seed)
    if val_images is None or len(val_images) == 0:
        return train_view, None
    return train_view, CropView(NativeImages.of(val_images, mode), "centre", fill)


def pooled_evaluate(model, val_view: CropView, val_labels, config, mean, std, policy) -> dict:
    """``evaluate`` with each image's logits the mean over its grid of crops (what scoring
    does), so the temperature is fitted to the logits the version will produce."""
    grid = CropView(val_view.images, "grid", val_view.fill)
    labels = np.repeat(np.asarray(val_labels, dtype=np.int64), grid.per_image)
    loader = BatchLoader(grid, labels, config.eval_batch_size, eval_transform(grid.crop, mean, std))
    result = evaluate(model, loader, policy, tta=config.tta == "flip")
    logits = torch.from_numpy(pool_logits(result["logits"], grid.per_image))
    targets = torch.from_numpy(np.asarray(val_labels, dtype=np.int64))
    return {
        **result,
        "logits": logits.numpy(),
        "labels": targets.numpy(),
        "loss": float(nn.functional.cross_entropy(logits, targets)),
        "accuracy": float((logits.argmax(1) == targets).float().mean()),
    }


def _training_network(model: nn.Module, policy: Policy, distributed) -> nn.Module:
    """What the training steps run: ``model`` itself, or, distributed, ``model`` with batch
    norm over the global batch inside DistributedDataParallel (which averages gradients)."""
    if distributed is None:
        return model
    sync_batch_norm(model, policy.device)
    device_ids = [policy.device.index] if policy.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _loaders(train_images, train_labels, val_images, val_labels, config, mean, std, distributed):
    """The shuffled, augmented training loader and the plain validation loader (or None).

    Distributed, each rank's loader takes its share of every global batch, and only rank 0
    has a validation loader.
    """
    transform = train_transform(config.image_size, mean, std, config.augment_settings())
    drop_last = len(train_images) > config.batch_size  # never a last batch of one for batch norm
    shard = (0, 1) if distributed is None else (distributed.rank, distributed.world_size)
    loader = BatchLoader(
        train_images,
        train_labels,
        config.batch_size,
        transform,
        shuffle=True,
        seed=config.seed,
        drop_last=drop_last,
        shard=shard,
    )
    if val_images is None or len(val_images) == 0:
        return loader, None
    if distributed is not None and not distributed.is_main:
        return loader, None
    val_transform = eval_transform(config.image_size, mean, std)
    return loader, BatchLoader(val_images, val_labels, config.eval_batch_size, val_transform)


@dataclass
class _Loop:
    """What the epoch loop works with: the network and what the steps run (the same network,
    or its DDP wrapper), the data, the optimizer and its schedule, and where progress goes."""

    model: nn.Module
    network: nn.Module
    loader: BatchLoader
    val_loader: BatchLoader | None
    optimizer: torch.optim.Optimizer
    schedule: _Schedule
    policy: Policy
    config: TrainConfig
    reporter: _Reporter
    ema: WeightEMA | None = None
    margins: MarginRecorder | None = None

    def after_batch(self, epoch: int):
        """The per-batch callback: the weight average's update and the margins' record, then
        progress (any may be absent; None when all are). Call it after the loader's
        ``set_epoch``: the margins find each batch's images in that epoch's order."""
        report = self.reporter.batch_callback(epoch)
        if self.ema is None and self.margins is None:
            return report
        batches = self.loader.batches_of_indices() if self.margins is not None else None

        def update(batch: dict) -> None:
            if self.ema is not None:
                self.ema.update(self.model)
            if batches is not None:
                rows = batches[batch["batch"] - 1]
                self.margins.add(rows, batch["logits"], batch["labels"], epoch)
            if report is not None:
                report(batch)

        return update


def _epochs(loop: _Loop, should_stop, distributed=None) -> tuple[list[dict], dict | None]:
    """The epoch loop: train, validate when due, record; ends early when the budget is spent."""
    config, policy, schedule = loop.config, loop.policy, loop.schedule
    # Evaluation runs the eager network: compiling its eval-mode graph too would cost minutes.
    step_model = torch.compile(loop.network) if config.compile else loop.network
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    scaler = torch.amp.GradScaler(policy.device.type) if policy.needs_grad_scaler else None
    history, last_eval = [], None
    for epoch in range(1, config.epochs + 1):
        loop.loader.set_epoch(epoch)
        stats = train_one_epoch(
            step_model,
            loop.loader,
            loop.optimizer,
            policy,
            loss_fn,
            schedule,
            scaler,
            loop.after_batch(epoch),
            should_stop,
        )
        if distributed is not None:
            stats = distributed.combine_epoch(stats)
        final = epoch == config.epochs or schedule.spent()
        last_eval = None
        if loop.val_loader is not None and (final or epoch % max(config.eval_every, 1) == 0):
            last_eval = evaluate(loop.model, loop.val_loader, policy, tta=config.tta == "flip")
        history.append(_history_row(epoch, stats, last_eval, schedule))
        loop.reporter.epoch_done(history[-1])
        if final:
            break
    return history, last_eval


def _history_row(epoch: int, stats: dict, val: dict | None, schedule: _Schedule) -> dict:
    return {
        "epoch": epoch,
        "train_loss": stats["loss"],
        "train_acc": stats["accuracy"],
        "val_loss": None if val is None else val["loss"],
        "val_acc": None if val is None else val["accuracy"],
        "images_per_s": stats["images_per_s"],
        "seconds": stats["seconds"] + (0.0 if val is None else val["seconds"]),
        "lr": schedule.optimizer.param_groups[0]["lr"],
    }


def _finish(model, config, history, init_used, val, mean, std, policy_name: str, schedule):
    unpatch_small_convolutions(model)
    model.eval()
    model.zero_grad(set_to_none=True)  # the last step's gradients are dead weight from here
    temperature, metrics, logits = 1.0, None, None
    if val is not None:
        logits = val["logits"]
        temperature = fit_temperature(logits, val["labels"])
        metrics = classification_metrics(val["labels"], apply_temperature(logits, temperature))
        metrics["nll_raw"] = float(val["loss"])
    return TrainResult(
        model=model,
        config=config,
        history=history,
        temperature=temperature,
        init_weights=init_used,
        val_metrics=metrics,
        mean=list(mean),
        std=list(std),
        val_logits=logits,
        seconds=time.perf_counter() - schedule.started,
        policy=policy_name,
    )


class _Reporter:
    """Turns per-batch statistics into throttled ``on_progress`` dicts with speed and ETA."""

    def __init__(self, on_progress, config: TrainConfig, images_per_epoch: int, schedule):
        self.on_progress, self.config = on_progress, config
        self.images_per_epoch, self.schedule = images_per_epoch, schedule
        self.last_report = 0.0
        self.images_scale = 1  # distributed: a rank sees 1/world_size of each batch

    def batch_callback(self, epoch: int):
        if self.on_progress is None:
            return None

        def report(batch: dict) -> None:
            now = time.perf_counter()
            edge = batch["batch"] in (1, batch["batches"])
            if not edge and now - self.last_report < self.config.progress_interval_s:
                return
            self.last_report = now
            images = batch["images"] * self.images_scale
            speed = images / batch["seconds"] if batch["seconds"] > 0 else 0.0
            remaining = (self.config.epochs - epoch + 1) * self.images_per_epoch - images
            eta = remaining / speed if speed > 0 else None
            if self.schedule.budget_s and eta is not None:
                left = self.schedule.budget_s - self.schedule.elapsed()
                eta = max(0.0, min(eta, left))
            self.on_progress(
                {
                    "phase": "train",
                    "epoch": epoch,
                    "epochs": self.config.epochs,
                    "batch": batch["batch"],
                    "batches": batch["batches"],
                    "loss": batch["loss"],
                    "images_per_s": speed,
                    "eta_s": eta,
                }
            )

        return report

    def epoch_done(self, row: dict) -> None:
        if self.on_progress is not None:
            self.on_progress({"phase": "epoch", "epochs": self.config.epochs, **row})
