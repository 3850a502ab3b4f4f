"""A version trained on crops is scored with crops, through the app: CLI, job log, version row,
``model list``, the Versions page, the predict job and evaluation.

The tiny generated images (40 px) are larger than the 16 px crop, so crops and resizing give
different pixels, and the stored scores can be told apart from what resizing would give.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sqlalchemy import select

from model.checkpoint import load_checkpoint
from model.crops import InputMode, decode_native
from model.predict import Predictor
from tests.services.training.test_training import latest_job, write_separable_folder
from webapp.extensions import db
from webapp.jobs import wait_for
from webapp.models import Image, JobState, ModelVersion, Prediction
from webapp.services.importing.importer import import_path
from webapp.services.importing.pixels import load_pixels
from webapp.services.storage import original_path
from webapp.services.training.training import describe_settings, resolve_train_config


@pytest.fixture
def photos_dataset(app, app_ctx, tmp_path):
    """48 images of 40 px; REALFAKE_IMAGE_SIZE / REALFAKE_EPOCHS unset, as for a user."""
    app.config["DEFAULT_IMAGE_SIZE"] = None
    app.config["DEFAULT_EPOCHS"] = None
    write_separable_folder(tmp_path / "src", per_class=24, size=40)
    report = import_path(tmp_path / "src", dataset="tiny", workers=1)
    assert report.as_json()["imported"] == 48
    return "tiny"


@pytest.mark.slow
def test_a_version_trained_on_crops_is_recorded_and_scored_with_crops(
    photos_dataset, worker, runner, client, auth
):
    flags = ["--input", "crops", "--image-size", "16", "--downscale", "2", "--crop-grid", "2"]
    train_args = ["model", "train", "--preset", "demo", "--epochs", "1", *flags, "--wait"]
    result = runner.invoke(args=train_args)
    assert result.exit_code == 0, result.output
    assert "scored 48 images with v1" in result.output
    job = wait_for(latest_job("train").id, timeout=300, poll=0.1)
    assert job.state == JobState.SUCCEEDED, job.error
    assert (
        "input crops 16 px at 1/2 scale, scored over 2x2 crops (--input, --downscale, --crop-grid)"
        in job.log
    )
    version = db.session.scalar(select(ModelVersion))
    assert version.input_mode == "crops" and version.train_args["downscale"] == 2.0
    _, meta = load_checkpoint(version.checkpoint_path)
    mode = InputMode.from_meta(meta)
    assert mode == InputMode("crops", crop_size=16, downscale=2.0, grid=2)
    assert re.search(r"v1 .* size=16 .* input=crops ", runner.invoke(args=["model", "list"]).output)

    scoring = wait_for(latest_job("predict").id, timeout=300, poll=0.1)
    assert scoring.state == JobState.SUCCEEDED, scoring.error
    images = db.session.scalars(select(Image).order_by(Image.id)).all()
    stored = dict(
        db.session.execute(
            select(Prediction.image_id, Prediction.p_fake).where(
                Prediction.model_version_id == version.id
            )
        ).all()
    )
    assert sorted(stored) == [image.id for image in images]
    # Computed here from the stored originals: halved (40 -> 20 px), a 2x2 grid, mean logits.
    model, meta = load_checkpoint(version.checkpoint_path)
    natives = [decode_native(original_path(image), mode) for image in images]
    assert {native.shape for native in natives} == {(20, 20, 3)}
    expected = Predictor(model, meta, precision="fp32", engine="eager").predict(natives).p_fake
    got = np.array([stored[image.id] for image in images])
    assert got == pytest.approx(expected, abs=1e-4)
    resized_meta = {key: value for key, value in meta.items() if key != "input"}
    resized = Predictor(model, resized_meta, precision="fp32", engine="eager")
    as_if_resized = resized.predict(load_pixels([image.id for image in images], 16)).p_fake
    assert np.abs(got - as_if_resized).max() > 1e-3  # the crops, not the resized cache

    evaluated = runner.invoke(args=["model", "evaluate", "--dataset", "tiny", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["n"] == 48
    perturbed = ["model", "evaluate", "--dataset", "tiny", "--perturb", "resize50", "--json"]
    evaluated = runner.invoke(args=perturbed)
    assert evaluated.exit_code == 0, evaluated.output  # halved copies: 20 px, padded to the crop
    assert json.loads(evaluated.output)["n"] == 48
    auth.login("admin")
    page = client.get("/admin/versions").get_data(as_text=True)
    row = re.search(r'id="version-v1">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'class="size">16 px <span class="input-mode">crops</span><', row)


CROP_FLAGS = ["--image-size", "16", "--downscale", "2", "--crop-grid", "2"]


@pytest.mark.slow
def test_crops_train_in_two_processes(photos_dataset, worker, runner, app):
    """``--nproc 2`` on crops: the job exports the originals at the crops' scale, torchrun's
    ranks train on the crops one process would draw, and the version scores with crops."""
    app.config["MODEL_DEVICE"] = "cpu"  # one GPU could not host two NCCL ranks
    args = ["model", "train", "--preset", "demo", "--epochs", "1", "--input", "crops"]
    result = runner.invoke(args=[*args, *CROP_FLAGS, "--nproc", "2", "--wait"])
    assert result.exit_code == 0, result.output
    assert "scored 48 images with v1" in result.output
    job = latest_job("train")
    assert job.state == JobState.SUCCEEDED and job.params["nproc"] == 2
    assert "input crops 16 px at 1/2 scale, scored over 2x2 crops" in job.log
    version = db.session.scalar(select(ModelVersion))
    _, meta = load_checkpoint(version.checkpoint_path)
    assert InputMode.from_meta(meta) == InputMode("crops", crop_size=16, downscale=2.0, grid=2)
    assert meta["policy"].endswith("ddp x2 gloo") and version.metrics["val"]["n"] > 0


@pytest.mark.slow
def test_a_crops_recipe_exports_the_originals_at_the_crops_scale(photos_dataset, runner, tmp_path):
    from model.distributed import main as train_from_folder
    from model.trainset_file import load_trainset

    folder = tmp_path / "export"
    args = ["model", "export-trainset", str(folder), "--preset", "photos", "--epochs", "1"]
    exported = runner.invoke(args=[*args, "--image-size", "16"])
    assert exported.exit_code == 0, exported.output
    assert "at 1/2 scale (the 16 px crops are taken in training)" in exported.output
    data = load_trainset(folder)
    assert data.config.input_mode == "crops"
    assert {image.shape for image in data.train_images + data.val_images} == {(20, 20, 3)}
    first = db.session.get(Image, int(np.load(folder / "train_ids.npy")[0]))
    mode = data.config.input_settings()
    assert np.array_equal(data.train_images[0], decode_native(original_path(first), mode))
    train_from_folder(["--data", str(folder), "--out", str(tmp_path / "outside.pt")])
    args = ["model", "register", str(tmp_path / "outside.pt"), "--trainset", str(folder)]
    registered = runner.invoke(args=[*args, "--no-score"])
    assert registered.exit_code == 0, registered.output
    version = db.session.scalar(select(ModelVersion))
    assert version.input_mode == "crops" and version.train_args["downscale"] == 2.0


@pytest.mark.parametrize(
    ("params", "expected", "source"),
    [
        ({"preset": "photos"}, ("crops", 224, 2.0, 3), "preset photos"),
        ({"preset": "demo"}, ("resize", 64, 1.0, 3), "preset demo"),
        (
            {"preset": "demo", "input_mode": "crops", "crop_grid": 2},
            ("crops", 64, 1.0, 2),
            "--input, --crop-grid",
        ),
        ({"preset": "photos", "input_mode": "resize"}, ("resize", 224, 2.0, 3), "--input"),
    ],
)
def test_the_input_mode_comes_from_the_flags_then_the_preset(app, params, expected, source):
    app.config.update(DEFAULT_IMAGE_SIZE=None, DEFAULT_EPOCHS=None)
    with app.app_context():
        config, sources = resolve_train_config(params)
    assert (config.input_mode, config.image_size, config.downscale, config.crop_grid) == expected
    assert sources["input_mode"] == source
    assert f"input {config.input_settings().describe()} ({source})" in describe_settings(
        config, sources
    )


def test_crop_settings_on_a_resize_version_are_refused(app):
    with app.app_context(), pytest.raises(ValueError, match="apply to --input crops only"):
        resolve_train_config({"preset": "demo", "downscale": 1.5})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--input", "resize", "--downscale", "2"], "apply to --input crops only"),
        (["--input", "crops", "--downscale", "3"], "1.0<=x<=2.0"),
        (["--input", "tiles"], "'tiles' is not one of 'resize', 'crops'"),
    ],
)
def test_bad_crop_flags_are_refused_before_anything_is_queued(app_ctx, runner, flags, message):
    from webapp.models import Job

    result = runner.invoke(args=["model", "train", *flags])
    assert result.exit_code == 2 and message in result.output, result.output
    assert db.session.scalar(select(Job)) is None
