"""A training request is checked before it is queued: types, ranges, dataset names, presets."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.admin_factories import make_dataset
from tests.helpers import make_user
from webapp.extensions import db
from webapp.models import Job
from webapp.services.tokens import create_token
from webapp.services.train_request import PRESETS, TrainRequestError, clean_train_params


@pytest.fixture
def admin_secret(app):
    with app.app_context():
        make_dataset("main")
        make_dataset("held-out", evaluation_only=True)
        return create_token(make_user("adam", role="admin"), "adam's script")[1]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"epochs": -5}, "epochs must be a whole number from 1 to 1000"),
        ({"epochs": 0}, "epochs must be a whole number from 1 to 1000"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"epochs": True}, "epochs must be a whole number"),
        ({"image_size": "abc"}, "image_size must be a whole number from 16 to 1024"),
        ({"image_size": 10**30}, "image_size must be a whole number"),
        ({"seed": -1}, "seed must be a whole number"),
        ({"datasets": ["nosuch"]}, "no dataset 'nosuch'"),
        ({"datasets": "main"}, "datasets must be a list of dataset names"),
        ({"datasets": [1]}, "datasets must be a list of dataset names"),
        ({"datasets": ["held-out"]}, "evaluation-only datasets are never trained on: held-out"),
        ({"score": "yes"}, "score must be true or false"),
        ({"preset": "fastest"}, "preset must be one of seed, demo, cifake"),
        (
            {"epochs": -5, "image_size": "abc", "datasets": ["nosuch"]},
            "epochs must be a whole number from 1 to 1000; "
            "image_size must be a whole number from 16 to 1024; no dataset 'nosuch'",
        ),
    ],
)
def test_bad_training_requests_are_refused_and_queue_nothing(app, admin_secret, body, message):
    response = app.test_client().post(
        "/api/v1/train", json=body, headers={"Authorization": f"Bearer {admin_secret}"}
    )
    assert response.status_code == 400
    assert message in response.get_json()["message"]
    with app.app_context():
        assert db.session.scalars(select(Job).where(Job.kind == "train")).all() == []


def test_a_good_request_keeps_its_parameters(app, admin_secret):
    body = {"epochs": 2, "image_size": 32, "datasets": ["main"], "seed": 7, "score": False}
    response = app.test_client().post(
        "/api/v1/train", json=body, headers={"Authorization": f"Bearer {admin_secret}"}
    )
    assert response.status_code == 202
    assert response.get_json()["params"] == body


def test_null_fields_mean_the_default(app_ctx):
    assert clean_train_params({"epochs": None, "head_only": False}) == {"head_only": False}
    with pytest.raises(TrainRequestError, match="unknown field"):
        clean_train_params({"epoch": 1})


def test_the_preset_names_are_the_models():
    from model.train import TrainConfig

    for name in PRESETS:
        assert TrainConfig.preset(name).image_size > 0
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.preset("not-" + PRESETS[0])
