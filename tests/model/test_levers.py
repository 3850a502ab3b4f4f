"""The CIFAKE recipe's levers: a moving average of the weights, and flip test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from model.config import TrainConfig
from model.ema import WeightEMA
from model.predict import Predictor
from model.train import train
from tests.model.conftest import tiny_config


def test_the_average_follows_the_weights_with_a_warming_decay():
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    ema = WeightEMA(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update(layer)  # decay min(0.9, 2/11): the average moves 9/11 of the way
    assert ema.shadow[0].item() == pytest.approx(9 / 11)
    ema.copy_to(layer)
    assert layer.weight.item() == pytest.approx(9 / 11)
    with pytest.raises(ValueError, match="EMA decay"):
        WeightEMA(layer, decay=1.0)


def test_training_with_the_average_ends_with_other_weights(tiny_data):
    plain = train(*tiny_data[:4], tiny_config(epochs=2), *tiny_data[4:])
    averaged = train(*tiny_data[:4], tiny_config(epochs=2, ema_decay=0.9), *tiny_data[4:])
    first, second = plain.model.state_dict(), averaged.model.state_dict()
    assert not torch.equal(first["fc.weight"], second["fc.weight"])
    assert averaged.val_metrics["n"] == 16 and averaged.history[-1]["epoch"] == 2


def test_flip_tta_averages_an_image_and_its_mirror(tiny_run, tiny_data):
    images = tiny_data[2][:6]
    mirrored = images[:, :, ::-1].copy()
    meta = tiny_run.checkpoint_meta()
    assert meta["tta"] == "none"
    plain = Predictor(tiny_run.model, meta, device="cpu", precision="fp32", engine="eager")
    flipping = Predictor(
        tiny_run.model, {**meta, "tta": "flip"}, device="cpu", precision="fp32", engine="eager"
    )
    expected = (plain.predict(images).logits + plain.predict(mirrored).logits) / 2
    np.testing.assert_allclose(flipping.predict(images).logits, expected, atol=1e-5)
    np.testing.assert_allclose(
        flipping.predict(images).logits, flipping.predict(mirrored).logits, atol=1e-5
    )


def test_a_tta_run_records_it_and_bad_values_are_refused(tiny_data):
    result = train(*tiny_data[:4], tiny_config(tta="flip"), *tiny_data[4:])
    assert result.checkpoint_meta()["tta"] == "flip"
    with pytest.raises(ValueError, match="unknown tta"):
        TrainConfig(tta="rotate")
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.5)


def test_npr_residual_is_each_pixel_minus_its_blocks_top_left():
    from model.network import residual_of

    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5) ** 1.5
    residual = residual_of(images, "npr")
    for row in range(5):
        for column in range(5):
            anchor = images[..., row - row % 2, column - column % 2]
            torch.testing.assert_close(
                residual[..., row, column], images[..., row, column] - anchor
            )
    assert torch.count_nonzero(residual[..., ::2, ::2]) == 0  # the anchors themselves
    flat = torch.full((1, 3, 6, 6), 0.7)
    assert residual_of(flat, "highpass").abs().max() < 1e-6  # a flat image has no detail
    with pytest.raises(ValueError, match="unknown residual"):
        residual_of(images, "sobel")


def test_a_residual_run_records_it_and_its_checkpoint_scores_the_same(tiny_data, tmp_path):
    from model.checkpoint import load_checkpoint, save_checkpoint

    result = train(*tiny_data[:4], tiny_config(residual="npr"), *tiny_data[4:])
    assert result.model.conv1.in_channels == 6
    meta = result.checkpoint_meta()
    assert meta["residual"] == "npr" and meta["train_args"]["residual"] == "npr"
    path = save_checkpoint(tmp_path / "npr.pt", result.model, meta)
    loaded, loaded_meta = load_checkpoint(path)
    images = tiny_data[2][:6]
    for engine in ("eager", "fused"):
        original = Predictor(result.model, meta, device="cpu", precision="fp32", engine="eager")
        again = Predictor(loaded, loaded_meta, device="cpu", precision="fp32", engine=engine)
        np.testing.assert_allclose(
            again.predict(images).logits, original.predict(images).logits, atol=1e-4
        )
    plain = train(*tiny_data[:4], tiny_config(), *tiny_data[4:])
    assert not np.allclose(plain.val_logits, result.val_logits)  # the residual is really read
    with pytest.raises(ValueError, match="unknown residual"):
        TrainConfig(residual="sobel")


def test_imagenet_weights_start_unchanged_under_a_residual(tmp_path):
    from torchvision.models import resnet18

    from model.network import build_model

    torch.manual_seed(5)
    path = tmp_path / "weights.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    plain, _ = build_model(weights_path=str(path))
    wide, init = build_model(weights_path=str(path), residual="highpass")
    assert init.startswith("imagenet:") and wide.conv1.weight.shape[1] == 6
    images = torch.randn(2, 3, 32, 32)
    plain.fc, wide.fc = nn.Identity(), nn.Identity()
    # Six input channels sum in another order than three: allow rounding (any CPU's kernels), far
    # below what a non-zero residual weight would change (order 1).
    torch.testing.assert_close(wide.eval()(images), plain.eval()(images), atol=1e-4, rtol=1e-4)
