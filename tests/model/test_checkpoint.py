"""Checkpoints round-trip exactly and refuse files they cannot rebuild."""

import numpy as np
import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.predict import Predictor


def test_round_trip_gives_identical_outputs(tiny_run, tiny_data, tmp_path):
    meta = tiny_run.checkpoint_meta(train_set_sha256="ab" * 32, extra=np.float32(1.5))
    path = save_checkpoint(tmp_path / "v1" / "model.pt", tiny_run.model, meta)
    model, loaded = load_checkpoint(path)
    assert loaded["temperature"] == pytest.approx(tiny_run.temperature)
    assert loaded["class_order"] == ["real", "fake"] and loaded["extra"] == 1.5
    assert loaded["train_args"]["image_size"] == 32 and loaded["stem"] == "imagenet"
    assert loaded["history"] == tiny_run.history
    assert not model.training
    images = tiny_data[2]
    before = Predictor(tiny_run.model, meta, engine="eager").predict(images)
    after = Predictor(model, loaded, engine="eager").predict(images)
    assert np.array_equal(before.logits, after.logits)
    assert np.array_equal(before.p_fake, after.p_fake)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left behind


def test_unreadable_or_foreign_files_are_clear_errors(tmp_path, tiny_run):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a RealFake checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="lacks"):
        save_checkpoint(tmp_path / "bad.pt", tiny_run.model, {"stem": "imagenet"})
