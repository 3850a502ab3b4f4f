"""Training: a tiny model learns, reports progress, stops on request and is reproducible."""

import numpy as np
import pytest
import torch

from model.config import TrainConfig
from model.metrics import THRESHOLD_MARGIN, fit_operating_point
from model.predict import Predictor, reproduces
from model.train import TrainingStopped, lr_at, train
from tests.model.conftest import tiny_config


def test_one_epoch_produces_history_metrics_and_progress(tiny_data):
    events = []
    result = train(*tiny_data[:4], tiny_config(), *tiny_data[4:], on_progress=events.append)
    assert [row["epoch"] for row in result.history] == [1]
    row = result.history[0]
    assert {
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "images_per_s",
        "seconds",
    } <= set(row)
    assert row["images_per_s"] > 0 and row["val_acc"] is not None
    assert result.init_weights == "random" and result.temperature > 0
    assert result.val_metrics["n"] == 16
    batches = [e for e in events if e["phase"] == "train"]
    assert batches and {"epoch", "batch", "batches", "images_per_s", "eta_s", "loss"} <= set(
        batches[-1]
    )
    assert batches[-1]["batch"] == batches[-1]["batches"] == 3
    assert events[-1]["phase"] == "epoch"


def test_the_network_learns_the_difference(tiny_run):
    assert tiny_run.history[-1]["train_loss"] < tiny_run.history[0]["train_loss"]
    assert tiny_run.val_metrics["accuracy"] >= 0.9


def test_same_seed_same_metrics_other_seed_other_weights(tiny_data):
    runs = [train(*tiny_data[:4], tiny_config(seed=seed), *tiny_data[4:]) for seed in (5, 5, 6)]
    assert runs[0].history[0]["train_loss"] == runs[1].history[0]["train_loss"]
    assert runs[0].val_metrics == runs[1].val_metrics
    assert np.array_equal(runs[0].val_logits, runs[1].val_logits)
    first, third = runs[0].model.state_dict(), runs[2].model.state_dict()
    assert not torch.equal(first["fc.weight"], third["fc.weight"])


def test_should_stop_aborts_training(tiny_data):
    with pytest.raises(TrainingStopped):
        train(*tiny_data[:4], tiny_config(), *tiny_data[4:], should_stop=lambda: True)


def test_time_budget_ends_the_run_early(tiny_data):
    result = train(*tiny_data[:4], tiny_config(epochs=50, max_minutes=1e-6), *tiny_data[4:])
    assert len(result.history) == 1  # the budget was spent before the first step
    assert result.val_metrics is not None


def test_no_validation_split_means_no_temperature(tiny_data):
    result = train(*tiny_data[:2], None, None, tiny_config(), *tiny_data[4:])
    assert result.temperature == 1.0 and result.val_metrics is None
    assert result.history[0]["val_acc"] is None
    assert result.val_p_fake is None


def test_bad_inputs_are_refused_with_a_reason(tiny_data):
    images, labels = tiny_data[0], tiny_data[1]
    with pytest.raises(ValueError, match="labels must be 0"):
        train(images, labels + 1, None, None, tiny_config(), *tiny_data[4:])
    with pytest.raises(ValueError, match="images but"):
        train(images, labels[:-1], None, None, tiny_config(), *tiny_data[4:])
    with pytest.raises(ValueError, match="uint8"):
        train(images.astype(np.float32), labels, None, None, tiny_config(), *tiny_data[4:])
    with pytest.raises(ValueError, match="unknown optimizer"):
        tiny_config(optimizer="lion")


def test_one_cycle_warms_up_then_anneals():
    config = TrainConfig(lr=1.0, schedule="onecycle", warmup_fraction=0.2)
    assert lr_at(config, 0.0) == pytest.approx(0.04)
    assert lr_at(config, 0.2) == pytest.approx(1.0, abs=1e-3)
    assert lr_at(config, 1.0) < 0.001
    assert TrainConfig.from_dict(config.to_dict() | {"unknown": 1}) == config


def test_presets_are_valid_configurations():
    assert TrainConfig.preset("cifake").image_size == 32
    assert TrainConfig.preset("demo", epochs=1).epochs == 1
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.preset("nope")


def test_the_runs_own_validation_p_fake_is_what_its_checkpoint_scores(tiny_run, tiny_data):
    """The desk fits a version's threshold on the run's own validation outputs when its
    scoring engine reproduces them (fp32 on the CPU), and scores the images again otherwise."""
    meta = tiny_run.checkpoint_meta()
    val_images, val_labels = tiny_data[2], tiny_data[3]
    fp32 = Predictor(tiny_run.model, meta, device="cpu", precision="fp32", engine="fused")
    assert tiny_run.val_p_fake.shape == (len(val_images),)
    assert reproduces(tiny_run.policy, fp32)
    scored = fp32.predict(val_images, batch_size=5).p_fake
    assert np.abs(tiny_run.val_p_fake - scored).max() < THRESHOLD_MARGIN / 10
    threshold, metrics = fit_operating_point(val_labels, tiny_run.val_p_fake, 0.0)
    assert metrics["target_fpr"] == 0.0 and metrics["n"] == len(val_images)
    assert ((scored >= threshold) & (val_labels == 0)).sum() == 0  # holds for the re-scored
    bf16 = Predictor(tiny_run.model, meta, device="cpu", precision="bf16", engine="eager")
    assert not reproduces(tiny_run.policy, bf16)
