"""The inference engine and training precision this machine runs fastest, measured and kept.

``model.tuning`` measures; this module decides when, and remembers the answer in
``<instance>/engine-tuning.json`` keyed by (device, input size) and, for training, by batch size
and the network's stem and residual input.
A stored answer is reused only on the machine it was measured on (the fingerprint: processor,
vector units, threads, PyTorch build), so an instance folder moved to another CPU kind measures
again instead of running the other machine's choice.

``REALFAKE_ENGINE_TUNING`` (``Config.ENGINE_TUNING``): ``auto`` measures on first use every
candidate, ``torch.compile`` included (its compilation time is part of the report); ``quick``
leaves ``compile`` out; ``off`` measures nothing and runs the fused network in fp32 (what the
test suite uses, so its numbers are the same on every CPU).

PyTorch is imported only by the functions that measure or load (``flask doctor`` reads the
stored choices without it).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from model.config import TrainConfig

MODES = ("auto", "quick", "off")
_lock = threading.Lock()


def mode() -> str:
    """The configured tuning mode (``auto``, ``quick`` or ``off``)."""
    value = str(current_app.config.get("ENGINE_TUNING") or "auto").lower()
    if value not in MODES:
        raise ValueError(f"REALFAKE_ENGINE_TUNING={value!r}: use one of {', '.join(MODES)}")
    return value


def tuning_file() -> Path:
    """Where the measured choices of this instance live."""
    return Path(current_app.instance_path) / "engine-tuning.json"


def _read_all() -> dict:
    try:
        return json.loads(tuning_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write(key: str, value: dict) -> None:
    """Add one entry, atomically (two workers tuning at once each leave a whole file)."""
    with _lock:
        entries = _read_all()
        entries[key] = value
        path = tuning_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries, indent=2, sort_keys=True), encoding="utf-8")
        temporary.replace(path)


def _inference_key(device: str, image_size: int) -> str:
    return f"inference:{device}:{image_size}"


def _training_key(
    device: str, image_size: int, batch_size: int, stem: str = "imagenet", residual: str = "none"
) -> str:
    """The usual network's key names only device, size and batch (as before stems were keyed);
    another stem or residual input adds its name, since it can choose apart."""
    key = f"training:{device}:{image_size}:bs{batch_size}"
    key += "" if stem == "imagenet" else f":stem-{stem}"
    return key + ("" if residual == "none" else f":residual-{residual}")


def machine_fingerprint(device) -> dict:
    """``model.tuning.machine_fingerprint`` (imported here: it loads PyTorch)."""
    from model.tuning import machine_fingerprint as fingerprint

    return fingerprint(device)


def _same_machine(entry: dict, device) -> bool:
    return entry.get("fingerprint") == machine_fingerprint(device)


def stored_entries() -> dict[str, dict]:
    """Every stored measurement, by key (``inference:cpu:224``, ``training:cpu:32:bs128``)."""
    return _read_all()


def stored_choice(device, image_size: int):
    """The inference choice (a ``TuningResult``) measured on this machine for this size."""
    from model.tuning import TuningResult

    entry = _read_all().get(_inference_key(str(device), image_size))
    if not entry or not _same_machine(entry, device):
        return None
    return TuningResult.from_dict(entry)


def tune(*args, **kwargs):
    """``model.tuning.tune`` (imported here: it loads PyTorch)."""
    from model.tuning import tune as measure

    return measure(*args, **kwargs)


def tune_training(*args, **kwargs) -> dict:
    """``model.tuning.tune_training`` (imported here: it loads PyTorch)."""
    from model.tuning import tune_training as measure

    return measure(*args, **kwargs)


def tune_inference(model, meta, device, *, include_compile: bool = True, log=None):
    """Measure now, store the result, and return it (``flask model tune`` and first use)."""
    engines = ("fused", "jit", "compile") if include_compile else ("fused", "jit")
    result = tune(model, meta, device, engines=engines, log=log)
    _write(_inference_key(str(device), result.image_size), result.to_dict())
    return result


def inference_choice(model, meta, device, log=None):
    """What scoring and evaluation run: the stored choice, or a measurement made now (then
    stored); None when tuning is off."""
    current = mode()
    if current == "off":
        return None
    stored = stored_choice(device, int(meta["image_size"]))
    if stored is not None:
        return stored
    if log is not None:
        compiled = ", compiled ones too: minutes; REALFAKE_ENGINE_TUNING=quick skips them"
        log(
            f"measuring this machine's scoring engines at {int(meta['image_size'])} px (once per "
            f"machine and size{compiled if current == 'auto' else ''})"
        )
    return tune_inference(model, meta, device, include_compile=current == "auto", log=log)


TRAINING_METHOD = 2
"""``model.tuning.TRAINING_METHOD`` (that module loads PyTorch; a test checks they agree)."""


def training_choice(
    device,
    image_size: int,
    batch_size: int,
    log=None,
    stem: str = "imagenet",
    residual: str = "none",
) -> dict | None:
    """``{"precision", "small_conv_grad", ...}`` for training this network (``stem``,
    ``residual``) at this size and batch on this machine: stored, or measured now with a few
    training steps; None when tuning is off."""
    if mode() == "off":
        return None
    key = _training_key(str(device), image_size, batch_size, stem, residual)
    entry = _read_all().get(key)
    if entry and _same_machine(entry, device) and entry.get("method") == TRAINING_METHOD:
        return entry
    result = tune_training(image_size, batch_size, device, log=log, stem=stem, residual=residual)
    _write(key, result)
    return result


def describe_entry(entry: dict) -> str:
    """One line about a stored measurement, for ``flask doctor``."""
    machine = (entry.get("fingerprint") or {}).get("processor", "an unknown machine")
    if "engine" in entry:
        speedup = entry.get("speedup") or 0.0
        return (
            f"{entry['engine']} {entry['precision']} batch {entry['batch_size']}: "
            f"{entry['images_per_second']:.1f} img/s, {speedup:.2f}x eager fp32 (on {machine})"
        )
    return (
        f"training in {entry['precision']}, small-conv gradient "
        f"{'on' if entry.get('small_conv_grad') else 'off'}: "
        f"{entry['images_per_second']:.1f} img/s against {entry['baseline_images_per_second']:.1f}"
        f" in fp32 (on {machine})"
    )


def measured_precision(config: TrainConfig, log=None) -> TrainConfig:
    """Resolve ``precision="auto"`` on a CPU to what this machine trains fastest for this
    network (stem, residual input), size and batch (:func:`training_choice`: stored, or a
    few timed steps now); fp32 when tuning is off. An explicit precision, and any accelerator,
    are left as they are."""
    from model.config import network_words
    from model.device import pick_device

    device = pick_device(config.device)
    if config.precision != "auto" or device.type != "cpu":
        return config
    choice = training_choice(
        device,
        config.image_size,
        config.batch_size,
        log=log,
        stem=config.stem,
        residual=config.residual,
    )
    if choice is None:
        return replace(config, precision="fp32")
    if log is not None:
        log(
            f"training precision {choice['precision']}, small-conv gradient "
            f"{'on' if choice['small_conv_grad'] else 'off'} (measured at {config.image_size} px "
            f"batch {config.batch_size}{network_words(config.stem, config.residual)}: "
            f"{choice['images_per_second']:.1f} img/s against "
            f"{choice['baseline_images_per_second']:.1f} in fp32)"
        )
    return replace(
        config,
        precision=choice["precision"],
        small_conv_grad=config.small_conv_grad and choice["small_conv_grad"],
    )
