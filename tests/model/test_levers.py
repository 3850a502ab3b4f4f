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
