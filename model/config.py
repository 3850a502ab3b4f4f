"""The configuration of a training run (``TrainConfig``) and its named recipes (presets).

Everything that decides a run is a field here, stored in the checkpoint as ``train_args``; the
presets are whole recipes a flag or an explicit setting may override value by value
(``TrainConfig.preset(name, **overrides)``). ``model.train`` runs a configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from model.crops import InputMode
from model.data import Augment


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored in the checkpoint as ``train_args``."""

    epochs: int = 5
    image_size: int = 224
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"  # adam | adamw | sgd
    momentum: float = 0.9  # sgd only
    schedule: str = "onecycle"  # onecycle | cosine | constant
    warmup_fraction: float = 0.15  # share of the run spent warming up (onecycle)
    label_smoothing: float = 0.0
    augment: str | dict = "seed"  # an Augment preset name or its fields
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (fp16 on cuda)
    stem: str = "imagenet"  # imagenet | medium | small
    residual: str = (
        "none"  # none | npr | highpass: a residual input beside the colours (network.py)
    )
    init: str = "auto"  # auto | imagenet | random
    weights_path: str | None = None
    weights_sha256: str | None = None
    zero_init_residual: bool = False
    small_conv_grad: bool = True  # CPU: im2col weight gradients for tiny outputs (cpu_conv.py)
    compile: bool = False  # torch.compile the training step's network (minutes to compile)
    channels_last: bool | None = None  # None: as the device's precision policy says
    threads: int | None = None  # torch CPU threads for the run (None: leave as is)
    max_minutes: float | None = None  # time budget; the schedule follows it
    budget_clock: str = "wall"  # wall | cpu (process CPU time / threads: fair on a shared box)
    eval_every: int = 1  # validate every N epochs (always after the last)
    eval_batch_size: int = 256
    deterministic: bool = True
    progress_interval_s: float = 0.5  # least time between two per-batch progress reports
    preset_name: str = "custom"  # the named recipe this configuration started from
    ema_decay: float = 0.0  # > 0: end with the moving average of the weights (model/ema.py)
    tta: str = "none"  # none | flip: score each image and its mirror image, logits averaged
    input_mode: str = "resize"  # resize | crops: random crops of image_size (model/crops.py)
    downscale: float = 1.0  # crops: shrink by this (1 to 2) before cropping; 1 = native pixels
    crop_grid: int = 3  # crops: scoring pools a crop_grid x crop_grid grid of crops per image

    def __post_init__(self):
        if self.optimizer not in {"adam", "adamw", "sgd"}:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: use adam, adamw or sgd")
        if self.budget_clock not in {"wall", "cpu"}:
            raise ValueError(f"unknown budget_clock {self.budget_clock!r}: use wall or cpu")
        if self.schedule not in {"onecycle", "cosine", "constant"}:
            raise ValueError(f"unknown schedule {self.schedule!r}: use onecycle, cosine, constant")
        if self.residual not in {"none", "npr", "highpass"}:
            raise ValueError(f"unknown residual {self.residual!r}: use none, npr or highpass")
        if self.tta not in {"none", "flip"}:
            raise ValueError(f"unknown tta {self.tta!r}: use none or flip")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 8:
            raise ValueError("epochs and batch_size must be >= 1 and image_size >= 8")
        self.augment_settings()  # fail early on a bad augmentation name
        self.input_settings()  # and on a bad input mode, downscale or grid

    def input_settings(self) -> InputMode:
        """How the network reads an image (``model.crops.InputMode``); the crop is the input
        size."""
        return InputMode(self.input_mode, self.image_size, float(self.downscale), self.crop_grid)

    def augment_settings(self) -> Augment:
        """The augmentation as an ``Augment``."""
        if isinstance(self.augment, dict):
            return Augment(**self.augment)
        return Augment.preset(self.augment)

    def to_dict(self) -> dict:
        """Plain values (for checkpoints, JSON and the ModelVersion row)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The inverse of ``to_dict``; unknown keys are ignored so old checkpoints still load."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def preset(cls, name: str, **overrides) -> TrainConfig:
        """Named recipes: ``seed`` (224 px as the seed did), ``demo`` (64 px, minutes on a CPU),
        ``cifake`` (32 px CIFAKE from random weights; see ``bench/cifake_bench.py``)."""
        recipes = RECIPES
        if name not in recipes:
            raise ValueError(f"unknown preset {name!r}: use {', '.join(recipes)}")
        return cls(**{**recipes[name], "preset_name": name, **overrides})


def network_words(stem: str = "imagenet", residual: str = "none") -> str:
    """`` stem medium``, `` residual npr``, both, or nothing for the usual network (log lines)."""
    words = "" if stem == "imagenet" else f" stem {stem}"
    return words + ("" if residual == "none" else f" residual {residual}")


DEMO_RECIPE: dict = {"image_size": 64, "epochs": 12, "batch_size": 32, "lr": 1e-3}
"""The demo recipe: 64 px, 12 epochs of 16 steps on the demo's 505 training images, about 1.5
minutes on two cores. Steps matter more than epochs on so few images: the earlier batch of 128
(4 steps an epoch) left the first demo version near chance; this recipe reaches 0.905 held-out
accuracy (the README's size table, ``bench/size_bench.py``)."""

CIFAKE_RECIPE: dict = {
    "image_size": 32,
    "stem": "imagenet",
    "batch_size": 256,
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 0.05,
    "schedule": "onecycle",
    "label_smoothing": 0.1,
    "augment": "flip",
    "init": "random",
    "epochs": 16,
    "eval_every": 2,
    "tta": "flip",
}
"""The CIFAKE recipe: 32 px, flips only, AdamW one-cycle; how it was chosen is in
``bench/cifake_bench.py``. On this CPU the "imagenet" stem tied the "medium" stem (slower per
image: 3.5x in fp32, 2.2x in bf16, which the tuner picks for it) at equal time: the medium stem
reached 95.27% in fp32 and 95.43% in bf16 against the preset's 95.30-95.37% (README). Random
crops cost accuracy in runs this short. Batch 256 (lr 3e-3) trains about 1.4x the images per
second of batch 128 on two cores (423-461 against 310 on the Intel AMX machine,
``bench/cifake_bench.py``) for as good a network per CPU-minute, so 16 epochs fit in 20 minutes
there (10 took 12.9); flip TTA added half a point at 0.5 to the same network. What each lever
gave is the README's lever table; on an AVX2-only CPU none of it is measured yet, and
``--minutes`` keeps a slower run inside its time."""


CIFAKE_ROBUST_RECIPE: dict = {**CIFAKE_RECIPE, "augment": "flip-degrade"}
"""The CIFAKE recipe with a third of the training images rescaled and a third re-encoded as JPEG
(quality 50-95), for sources that arrive re-compressed. At the full budget (README) it gave 0.8
points of clean accuracy and kept its AUC at JPEG quality 50 (0.987 against ``cifake``'s 0.977);
``flask model evaluate --perturb jpeg50`` says what it buys on your data."""

PHOTOS_RECIPE: dict = {
    **DEMO_RECIPE,
    "image_size": 224,
    "input_mode": "crops",
    "downscale": 2.0,
    "crop_grid": 3,
    "augment": "flip",
    "epochs": 20,
}
"""Photographs (long side up to about 1024 px): random 224 px crops of the image halved, flips
only (rotation and jitter would blur or shift the traces the crops keep), scored over a 3x3
grid of crops. What it reached against resize-only is in the README (``bench/photos_bench.py``)."""

RECIPES: dict[str, dict] = {
    "seed": {},
    "demo": DEMO_RECIPE,
    "cifake": CIFAKE_RECIPE,
    "cifake-robust": CIFAKE_ROBUST_RECIPE,
    "photos": PHOTOS_RECIPE,
}
"""The presets by name (``TrainConfig.preset``)."""
