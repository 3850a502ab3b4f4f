"""Perturbations for robustness: what each copy is, and random degradation while training."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model.data import Augment, TrainTransform
from model.perturb import PERTURBATIONS, degrade_batch, perturb_image
from model.train import train
from tests.model.conftest import tiny_config


def photo(width: int = 120, height: int = 80) -> Image.Image:
    """A smooth image with fine detail (a one-pixel checker) that lossy copies change."""
    ramp = np.linspace(0, 200, width)[None, :, None].repeat(height, 0).repeat(3, 2)
    checker = (np.indices((height, width)).sum(axis=0) % 2)[..., None] * 40.0
    return Image.fromarray(np.clip(ramp + checker, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("quality", [75, 50])
def test_jpeg_copies_are_reencoded_at_that_quality(quality):
    original = photo()
    copy = perturb_image(original, f"jpeg{quality}")
    assert copy.size == original.size and copy.mode == "RGB"
    buffer = io.BytesIO()
    original.save(buffer, format="JPEG", quality=quality)
    assert np.array_equal(np.asarray(copy), np.asarray(Image.open(buffer).convert("RGB")))
    error = np.abs(np.asarray(copy, float) - np.asarray(original, float)).mean()
    assert 0 < error < 25  # a lossy copy of the same picture


def test_resize_halves_and_crop_keeps_the_centre():
    original = photo(121, 80)
    assert perturb_image(original, "resize50").size == (60, 40)
    cropped = perturb_image(original, "crop90")
    assert cropped.size == (109, 72)
    left, top = (121 - 109) // 2, (80 - 72) // 2
    expected = np.asarray(original)[top : top + 72, left : left + 109]
    assert np.array_equal(np.asarray(cropped), expected)
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb_image(original, "blur")


def test_the_cli_offers_exactly_the_perturbations():
    from webapp.cli.evaluate import PERTURBATIONS as OFFERED

    assert OFFERED == PERTURBATIONS


def test_degradation_changes_only_the_rows_it_picked():
    batch = torch.from_numpy(np.stack([np.asarray(photo(32, 32))] * 4)).permute(0, 3, 1, 2)
    params = {
        "rescale": torch.tensor([True, False, False, False]),
        "scale": torch.full((4,), 0.5),
        "jpeg": torch.tensor([False, False, True, False]),
        "quality": torch.full((4,), 50),
    }
    out = degrade_batch(batch, params)
    changed = [not torch.equal(out[i], batch[i]) for i in range(4)]
    assert changed == [True, False, True, False]
    assert out.dtype == torch.uint8 and out.shape == batch.shape


def test_degrading_augmentation_draws_per_image_and_training_runs(tiny_data):
    transform = TrainTransform(32, [0.5] * 3, [0.25] * 3, Augment.preset("flip-degrade"))
    draws = transform.draw(1000, torch.Generator().manual_seed(0))
    assert 0.25 < draws["jpeg"].float().mean() < 0.35
    assert draws["quality"].min() >= 50 and draws["quality"].max() <= 95
    assert draws["scale"].min() >= 0.5 and draws["scale"].max() <= 1.0
    plain = TrainTransform(32, [0.5] * 3, [0.25] * 3, Augment.preset("flip"))
    assert set(plain.draw(4)) == {"flip"}  # runs without degradation draw as before
    result = train(*tiny_data[:4], tiny_config(augment="flip-degrade"), *tiny_data[4:])
    assert result.config.augment_settings().jpeg_p == 0.3
    assert result.val_metrics["n"] == 16
