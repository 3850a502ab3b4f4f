"""``flask model evaluate --perturb``: a version scored on perturbed copies made on the fly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from model.images import resize_for_model
from model.metrics import classification_metrics
from model.predict import Predictor
from tests.factories import make_active_version
from tests.services.training.test_training import tiny_dataset  # noqa: F401
from webapp.extensions import db
from webapp.models import Image, Prediction
from webapp.services.storage import original_path
from webapp.services.training.trainset import labelled_images


@pytest.fixture
def version(tiny_dataset):  # noqa: F811
    return make_active_version()


def halved_copies(image_ids) -> np.ndarray:
    """Each original at half its size, then resized to the model's 32 px (by hand)."""
    rows = []
    for image_id in image_ids:
        image = db.session.get(Image, int(image_id))
        with PILImage.open(original_path(image)) as original:
            width, height = original.size
            half = original.convert("RGB").resize(
                (round(width / 2), round(height / 2)), PILImage.Resampling.BILINEAR
            )
            rows.append(resize_for_model(half, 32))
    return np.stack(rows)


def test_evaluate_scores_perturbed_copies(version, runner):
    args = ["model", "evaluate", "--dataset", "tiny", "--perturb", "resize50", "--json"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output)
    assert (measured["perturb"], measured["n"], measured["threshold"]) == ("resize50", 48, 0.5)
    ids, labels = labelled_images("tiny").as_arrays()
    predictor = Predictor.from_checkpoint(version.checkpoint_path)
    by_hand = classification_metrics(labels, predictor.predict(halved_copies(ids)).p_fake)
    assert measured["roc_auc"] == pytest.approx(by_hand["roc_auc"])
    assert measured["brier"] == pytest.approx(by_hand["brier"], abs=1e-4)
    clean = runner.invoke(args=["model", "evaluate", "--dataset", "tiny", "--json"])
    assert measured["clean"]["accuracy"] == json.loads(clean.output)["accuracy"]
    assert measured["brier"] != pytest.approx(json.loads(clean.output)["brier"])
    assert db.session.scalar(select(Prediction.id)) is None  # nothing stored


def test_evaluate_refuses_an_unknown_perturbation(version, runner):
    result = runner.invoke(args=["model", "evaluate", "--dataset", "tiny", "--perturb", "blur"])
    assert result.exit_code != 0 and "'blur' is not one of" in result.output
