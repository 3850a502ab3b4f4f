"""Presets are whole: a preset's values hold unless a flag or an explicit setting chooses one.

Through the CLI (``flask model train --preset cifake``) and the Versions page's form, with a real
worker on a tiny generated dataset; the job log, the version row, ``model list`` and the page
all say which preset, size and epochs were used.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from model.config import RECIPES
from tests.helpers import csrf_token
from tests.services.training.test_training import latest_job, tiny_dataset, write_separable_folder  # noqa: F401
from webapp.config import Config
from webapp.extensions import db
from webapp.jobs import wait_for
from webapp.models import JobState, ModelVersion
from webapp.services.records import versions
from webapp.services.training.training import resolve_train_config


@pytest.fixture
def no_global_size(app):
    """The app as a user without REALFAKE_IMAGE_SIZE / REALFAKE_EPOCHS in the environment."""
    app.config["DEFAULT_IMAGE_SIZE"] = None
    app.config["DEFAULT_EPOCHS"] = None
    return app


def test_unset_variables_are_no_choice_and_set_ones_are(monkeypatch, tmp_path):
    monkeypatch.setenv("REALFAKE_INSTANCE", str(tmp_path))
    monkeypatch.delenv("REALFAKE_IMAGE_SIZE", raising=False)
    monkeypatch.setenv("REALFAKE_EPOCHS", "")
    config = Config()
    assert config.DEFAULT_IMAGE_SIZE is None and config.DEFAULT_EPOCHS is None
    monkeypatch.setenv("REALFAKE_IMAGE_SIZE", "64")
    monkeypatch.setenv("REALFAKE_EPOCHS", "3")
    config = Config()
    assert (config.DEFAULT_IMAGE_SIZE, config.DEFAULT_EPOCHS) == (64, 3)


@pytest.mark.parametrize(
    ("params", "settings", "expected"),
    [
        ({"preset": "cifake"}, {}, (32, 16, "preset cifake", "preset cifake")),
        ({"preset": "cifake", "epochs": 4}, {}, (32, 4, "preset cifake", "--epochs")),
        ({"preset": "demo", "image_size": 48}, {}, (48, 12, "--image-size", "preset demo")),
        ({"preset": "cifake"}, {"DEFAULT_IMAGE_SIZE": 64}, (64, 16, "REALFAKE_IMAGE_SIZE", None)),
        ({"preset": "cifake", "image_size": 40}, {"DEFAULT_IMAGE_SIZE": 64}, (40, 16, None, None)),
        ({}, {"TRAIN_PRESET": "demo", "DEFAULT_EPOCHS": 2}, (64, 2, None, "REALFAKE_EPOCHS")),
    ],
)
def test_values_come_from_flag_then_setting_then_preset(no_global_size, params, settings, expected):
    no_global_size.config.update(settings)
    with no_global_size.app_context():
        config, sources = resolve_train_config(params)
    size, epochs, size_from, epochs_from = expected
    assert (config.image_size, config.epochs) == (size, epochs)
    assert size_from is None or sources["image_size"] == size_from
    assert epochs_from is None or sources["epochs"] == epochs_from
    preset = params.get("preset") or settings.get("TRAIN_PRESET")
    assert config.preset_name == preset
    recipe = RECIPES[preset]  # every value the flags did not touch is the preset's
    assert config.lr == recipe.get("lr", 1e-3)
    assert config.batch_size == recipe.get("batch_size", 64)


def test_the_pages_preset_list_is_the_models():
    assert tuple(RECIPES) == versions.TRAIN_PRESETS


@pytest.mark.slow
def test_cli_preset_holds_and_is_recorded(no_global_size, tiny_dataset, worker, runner):  # noqa: F811
    result = runner.invoke(
        args=["model", "train", "--preset", "cifake", "--epochs", "1", "--no-score", "--wait"]
    )
    assert result.exit_code == 0, result.output
    job = latest_job("train")
    db.session.refresh(job)
    assert "preset cifake (--preset); image size 32 (preset cifake); epochs 1 (--epochs)" in job.log
    version = db.session.scalar(select(ModelVersion))
    assert (version.image_size, version.epochs, version.preset) == (32, 1, "cifake")
    assert version.train_args["batch_size"] == RECIPES["cifake"]["batch_size"]
    listing = runner.invoke(args=["model", "list"]).output
    assert re.search(r"v1 +full +preset=cifake size=32 +epochs=1 ", listing), listing


@pytest.mark.slow
def test_versions_page_trains_the_chosen_preset_and_shows_it(
    no_global_size,
    client,
    auth,
    tiny_dataset,  # noqa: F811
    worker,
):
    auth.login("admin")
    page = client.get("/admin/versions").get_data(as_text=True)
    assert '<option value="cifake">cifake</option>' in page
    token = csrf_token(client, "/admin/versions")
    form = {"csrf_token": token, "preset": "demo", "epochs": "1"}
    assert client.post("/admin/train", data=form).status_code == 302
    job = wait_for(latest_job("train").id, timeout=300, poll=0.1)
    assert job.state == JobState.SUCCEEDED, job.error
    page = client.get("/admin/versions").get_data(as_text=True)
    row = re.search(r'id="version-v1">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'class="preset">demo<', row)
    assert re.search(r'class="size">64 px<', row)  # the demo preset's size, not a global one
    assert re.search(r'class="epochs">1<', row)


@pytest.mark.slow
def test_a_residual_input_is_trained_recorded_and_shown(
    no_global_size,
    client,
    auth,
    tiny_dataset,  # noqa: F811
    worker,
    runner,
):
    args = ["model", "train", "--preset", "cifake", "--epochs", "1", "--residual", "npr"]
    result = runner.invoke(args=[*args, "--no-score", "--wait"])
    assert result.exit_code == 0, result.output
    job = latest_job("train")
    db.session.refresh(job)
    assert "residual npr (--residual)" in job.log
    version = db.session.scalar(select(ModelVersion))
    assert version.residual == "npr" and version.train_args["residual"] == "npr"
    from model.checkpoint import load_checkpoint

    network, meta = load_checkpoint(version.checkpoint_path)
    assert meta["residual"] == "npr" and network.conv1.in_channels == 6
    assert "residual=npr" in runner.invoke(args=["model", "list"]).output
    auth.login("admin")
    page = client.get("/admin/versions").get_data(as_text=True)
    row = re.search(r'id="version-v1">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r'class="input-mode"[^>]*>npr<', row)
    refused = runner.invoke(args=[*args[:-1], "sobel", "--no-score"])
    assert refused.exit_code != 0 and "sobel" in refused.output
