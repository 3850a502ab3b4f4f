"""One training epoch and one evaluation pass, both on batches from ``data.BatchLoader``."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from model.device import Policy


class TrainingStopped(Exception):
    """Raised inside training when ``should_stop()`` asked for it (a cancelled job)."""


def to_device(batch: torch.Tensor, policy: Policy) -> torch.Tensor:
    """Move a float batch to the policy's device in its memory format."""
    batch = batch.to(policy.device, non_blocking=True)
    return batch.contiguous(memory_format=policy.memory_format())


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    policy: Policy,
    loss_fn: nn.Module,
    set_lr: Callable[[], bool] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    on_batch: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train for one pass over ``loader``; returns mean loss, accuracy, images and seconds.

    ``set_lr()`` runs before each step to apply the schedule and returns False when the run's
    budget is spent (the epoch ends early). ``on_batch`` receives a dict per batch: its number
    (from 1), the loss, the images so far, the seconds, and the batch's detached ``logits`` and
    ``labels`` (``model.margins`` records them).
    """
    model.train()
    started = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    batches = len(loader)
    for index, (images, labels) in enumerate(loader):
        if should_stop is not None and should_stop():
            raise TrainingStopped("training was stopped on request")
        if set_lr is not None and not set_lr():
            break
        images, labels = to_device(images, policy), labels.to(policy.device)
        loss, logits = _step(model, images, labels, optimizer, policy, loss_fn, scaler)
        seen += labels.shape[0]
        loss_sum += loss * labels.shape[0]
        correct += int((logits.argmax(1) == labels).sum())
        if on_batch is not None:
            elapsed = time.perf_counter() - started
            on_batch(
                {
                    "batch": index + 1,
                    "batches": batches,
                    "loss": loss,
                    "images": seen,
                    "seconds": elapsed,
                    "logits": logits,
                    "labels": labels,
                }
            )
    seconds = time.perf_counter() - started
    return {
        "loss": loss_sum / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds if seconds > 0 else 0.0,
    }


def _step(model, images, labels, optimizer, policy, loss_fn, scaler):
    """One optimisation step; returns the loss as a float and the (detached) logits."""
    optimizer.zero_grad(set_to_none=True)
    with policy.autocast():
        logits = model(images)
        loss = loss_fn(logits.float(), labels)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach()), logits.detach()


def evaluate(model: nn.Module, loader, policy: Policy, tta: bool = False) -> dict:
    """Logits, labels, mean cross-entropy and accuracy of ``model`` over ``loader``.

    ``tta``: each image's logits are the mean of its own and its mirror image's.
    """
    model.eval()
    started = time.perf_counter()
    all_logits, all_labels = [], []
    with torch.inference_mode():
        for images, labels in loader:
            with policy.autocast():
                batch = to_device(images, policy)
                logits = model(batch)
                if tta:
                    logits = (logits.float() + model(torch.flip(batch, dims=[-1])).float()) / 2
            all_logits.append(logits.float().cpu())
            if labels is not None:
                all_labels.append(labels)
    seconds = time.perf_counter() - started
    logits = torch.cat(all_logits) if all_logits else torch.empty(0, 2)
    result = {
        "logits": logits.numpy(),
        "seconds": seconds,
        "images_per_s": len(logits) / seconds if seconds > 0 else 0.0,
    }
    if all_labels:
        labels = torch.cat(all_labels)
        result["labels"] = labels.numpy()
        result["loss"] = float(nn.functional.cross_entropy(logits, labels))
        result["accuracy"] = float((logits.argmax(1) == labels).float().mean())
    else:
        result.update(labels=np.empty(0, dtype=np.int64), loss=None, accuracy=None)
    return result
