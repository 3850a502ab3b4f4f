"""Batch inference: logits, raw and calibrated p_fake, and penultimate features in one pass.

``Predictor`` reuses ``data.eval_transform`` (the one preprocessing shared with evaluation) and
reads the uint8 array batch by batch, so a memmap of any size is never turned into floats at once.

Engines (``engine=``), measured in ``bench/model_bench.py``:

- ``eager``: the network as trained (eval mode), in the device's precision policy.
- ``fused``: batch norm folded into the preceding convolutions (exact up to rounding): fewer
  passes over memory, same numbers. The default on CPU.
- ``jit``: TorchScript trace + ``freeze`` + ``optimize_for_inference`` of the fused network.
- ``compile``: ``torch.compile`` of the fused network with inductor's freezing (weights become
  constants, so convolutions get prepacked kernels); needs a C compiler. The network is compiled
  once for the predictor's batch size when the predictor is built, and every batch, the last one
  padded to that size, reuses the compiled code.

Which engine, precision and batch size is fastest on a machine is measured by ``model.tuning``;
``engine="auto"`` without a measurement is ``fused``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from model.calibration import apply_temperature
from model.checkpoint import load_checkpoint
from model.crops import CropView, InputMode, NativeImages, fill_colour, pool_logits
from model.data import BatchLoader, eval_transform
from model.device import Policy, pick_device, precision_policy
from model.engine import to_device
from model.network import FEATURE_DIM, FeaturesAndLogits

ENGINES = ("auto", "eager", "fused", "jit", "compile")


@dataclass
class PredictOutput:
    """Per-image outputs, row i for input image i."""

    logits: np.ndarray  # (N, 2) float32
    p_fake_raw: np.ndarray  # (N,) float64, softmax of the logits
    p_fake: np.ndarray  # (N,) float64, temperature-scaled: what thresholds refer to
    features: np.ndarray  # (N, 512) float32, penultimate layer

    def __len__(self) -> int:
        return len(self.logits)


def fuse_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of a torchvision ResNet in eval mode with every BatchNorm folded into its conv."""
    fused = copy.deepcopy(model).eval()
    fused.conv1 = fuse_conv_bn_eval(fused.conv1, fused.bn1)
    fused.bn1 = nn.Identity()
    for layer in (fused.layer1, fused.layer2, fused.layer3, fused.layer4):
        for block in layer:
            block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
            block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
            if block.downsample is not None:
                conv, norm = block.downsample[0], block.downsample[1]
                block.downsample = nn.Sequential(fuse_conv_bn_eval(conv, norm))
    return fused


class Predictor:
    """Scores uint8 (N, S, S, 3) RGB images with a trained network and its checkpoint meta."""

    def __init__(
        self,
        model: nn.Module,
        meta: dict,
        device=None,
        precision=None,
        engine="auto",
        policy: Policy | None = None,
        batch_size: int = 256,
    ):
        """``policy`` (a ``device.Policy``) overrides ``device`` and ``precision`` entirely;
        ``batch_size`` is the images per forward pass ``predict`` uses unless told otherwise."""
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
        self.meta = meta
        self.policy = policy or precision_policy(pick_device(device or "auto"), precision)
        self.transform = eval_transform(meta["image_size"], meta["mean"], meta["std"])
        self.temperature = float(meta.get("temperature") or 1.0)
        self.input_mode = InputMode.from_meta(meta)
        self.engine = "fused" if engine == "auto" else engine
        self.batch_size = max(1, int(batch_size))
        # A copy: converting the caller's network to channels_last in place would surprise it.
        model = copy.deepcopy(model).eval()
        model = model.to(self.policy.device, memory_format=self.policy.memory_format())
        self.model = model
        self.runner = self._build_runner(model)

    @classmethod
    def from_checkpoint(
        cls, path, device=None, precision=None, engine="auto", batch_size: int = 256
    ) -> Predictor:
        """Load a checkpoint and make a predictor for it."""
        model, meta = load_checkpoint(path)
        return cls(
            model, meta, device=device, precision=precision, engine=engine, batch_size=batch_size
        )

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: the autocast precision of the forward pass."""
        return self.policy.name.split("/")[1]

    def _build_runner(self, model: nn.Module) -> nn.Module:
        if self.engine == "eager":
            return FeaturesAndLogits(model)
        fused = FeaturesAndLogits(fuse_batch_norm(model)).eval()
        fused = fused.to(self.policy.device, memory_format=self.policy.memory_format())
        for parameter in fused.parameters():  # constants for jit.freeze and inductor's freezing
            parameter.requires_grad_(False)
        if self.engine == "jit":
            return _scripted(fused, self.policy, self.meta["image_size"])
        if self.engine == "compile":
            return _compiled(fused, self.policy, self.batch_size, self.meta["image_size"])
        return fused

    def predict(
        self,
        images,
        batch_size: int | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> PredictOutput:
        """Score every image; ``on_batch(done, total)`` is called after each batch.

        A version trained on crops (``input_mode``) takes images of any size, a uint8
        (N, H, W, 3) array, a list of (H, W, 3) arrays or ``NativeImages``, and scores each as
        the mean of the logits (and features) of its grid of crops.
        """
        batch_size = batch_size or self.batch_size
        if self.input_mode.crops:
            return self._predict_crops(images, batch_size, on_batch)
        total = len(images)
        logits = np.empty((total, 2), dtype=np.float32)
        features = np.empty((total, FEATURE_DIM), dtype=np.float32)
        loader = BatchLoader(images, None, batch_size, self.transform)
        done = 0
        with torch.inference_mode():
            for batch, _ in loader:
                batch_features, batch_logits = self._forward_with_tta(batch)
                count = batch_logits.shape[0]
                logits[done : done + count] = batch_logits
                features[done : done + count] = batch_features
                done += count
                if on_batch is not None:
                    on_batch(done, total)
        return self._output(logits, features)

    def _predict_crops(self, images, batch_size: int, on_batch) -> PredictOutput:
        """``predict`` for a version trained on crops: whole images' grids per forward pass."""
        per_image = self.input_mode.crops_per_image
        grid = CropView(NativeImages.of(images, self.input_mode), "grid", self._fill())
        total = len(grid.images)
        logits = np.empty((total, 2), dtype=np.float32)
        features = np.empty((total, FEATURE_DIM), dtype=np.float32)
        images_per_pass = max(1, batch_size // per_image)
        loader = BatchLoader(grid, None, images_per_pass * per_image, self.transform)
        done = 0
        with torch.inference_mode():
            for batch, _ in loader:
                batch_features, batch_logits = self._forward_with_tta(batch)
                count = batch_logits.shape[0] // per_image
                logits[done : done + count] = pool_logits(batch_logits, per_image)
                features[done : done + count] = pool_logits(batch_features, per_image)
                done += count
                if on_batch is not None:
                    on_batch(done, total)
        return self._output(logits, features)

    def _fill(self) -> tuple[int, int, int]:
        return fill_colour(self.meta["mean"])

    def _forward_with_tta(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``_forward``, averaged with the mirror image's when the checkpoint says ``tta: flip``
        (the training measured and calibrated it that way)."""
        features, logits = self._forward(batch)
        if self.meta.get("tta") == "flip":
            mirrored_features, mirrored_logits = self._forward(torch.flip(batch, dims=[-1]))
            features = (features + mirrored_features) / 2
            logits = (logits + mirrored_logits) / 2
        return features, logits

    def _forward(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        count = batch.shape[0]
        if self.engine == "compile" and count > self.batch_size:
            # One image's grid of crops can outnumber the compiled batch: run it in pieces.
            pieces = [self._forward(part) for part in torch.split(batch, self.batch_size)]
            return tuple(np.concatenate(outputs) for outputs in zip(*pieces, strict=True))
        if self.engine == "compile" and count < self.batch_size:
            # Compiled for one batch shape: pad, rather than compile again for the last batch.
            padding = batch.new_zeros((self.batch_size - count, *batch.shape[1:]))
            batch = torch.cat([batch, padding])
        with self.policy.autocast():
            batch_features, batch_logits = self.runner(to_device(batch, self.policy))
        return (
            batch_features[:count].float().cpu().numpy(),
            batch_logits[:count].float().cpu().numpy(),
        )

    def _output(self, logits: np.ndarray, features: np.ndarray) -> PredictOutput:
        return PredictOutput(
            logits=logits,
            p_fake_raw=apply_temperature(logits, 1.0),
            p_fake=apply_temperature(logits, self.temperature),
            features=features,
        )


def reproduces(policy_name: str, predictor: Predictor) -> bool:
    """Whether ``predictor`` gives the p_fake a run under ``policy_name`` (a ``Policy.name``)
    measured, up to fp32 rounding: both in fp32 on the CPU. Rounding moves p_fake by about 1e-7,
    far below ``metrics.THRESHOLD_MARGIN``, so a threshold fitted on one holds for the other;
    bf16, fp16 or CUDA's TF32 move it by up to 1e-2, and then the images must be scored again."""
    fp32_cpu = "cpu/fp32/"
    return policy_name.startswith(fp32_cpu) and predictor.policy.name.startswith(fp32_cpu)


def outputs_from_features(model: nn.Module, features, temperature: float) -> PredictOutput:
    """The outputs of ``model`` for images whose penultimate ``features`` are already known:
    its ``fc`` applied to them, no forward pass. A head-only version shares its parent's
    backbone, so it scores every image its parent scored from the features the parent stored."""
    features = np.asarray(features, dtype=np.float32)
    weight = model.fc.weight.detach().float().cpu().numpy()
    bias = model.fc.bias.detach().float().cpu().numpy()
    logits = features @ weight.T + bias
    return PredictOutput(
        logits=logits,
        p_fake_raw=apply_temperature(logits, 1.0),
        p_fake=apply_temperature(logits, float(temperature)),
        features=features,
    )


def _scripted(module: nn.Module, policy, image_size: int) -> nn.Module:
    """TorchScript trace, freeze and optimise (PyTorch marks ``jit.trace`` deprecated).

    No ``check_trace``: its second trace sometimes names the graph's input ``%self.1`` instead
    of ``%self`` and calls that a different graph (a TracingCheckError now and then where a
    stored choice of this engine built its predictor, as scoring does); what matters, that the
    traced network's outputs match the eager network's, is what ``model.tuning`` measures before
    it chooses this engine."""
    example = torch.zeros(2, 3, image_size, image_size, device=policy.device)
    example = example.contiguous(memory_format=policy.memory_format())
    with warnings.catch_warnings(), torch.no_grad(), policy.autocast():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(module, example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def _compiled(module: nn.Module, policy, batch_size: int, image_size: int) -> Callable:
    """``torch.compile`` with freezing, compiled now for (batch_size, 3, S, S) inputs.

    Freezing is an inductor setting read while compiling, so the first call (which compiles)
    runs here, under the same grad mode and autocast as ``predict``'s calls.
    """
    from torch._inductor import config as inductor_config

    compiled = torch.compile(module, dynamic=False)
    example = torch.zeros(batch_size, 3, image_size, image_size, device=policy.device)
    example = example.contiguous(memory_format=policy.memory_format())
    with inductor_config.patch(freezing=True), torch.inference_mode(), policy.autocast():
        compiled(example)
    return compiled
