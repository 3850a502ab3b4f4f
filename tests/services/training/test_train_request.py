"""A training request is checked before it is queued: types, ranges, dataset names, presets."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories import make_dataset
from tests.helpers import make_user
from webapp.extensions import db
from webapp.models import Job
from webapp.services.people.tokens import create_token
from webapp.services.training.train_request import (
    PRESETS,
    TrainRequestError,
    clean_train_params,
)


@pytest.fixture
def admin_secret(app):
    with app.app_context():
        make_dataset("main")
        make_dataset("held-out", evaluation_only=True)
        return create_token(make_user("adam", role="admin"), "adam's script")[1]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"epochs": -5}, 400, "epochs: Input should be greater than or equal to 1"),
        ({"epochs": 0}, 400, "epochs: Input should be greater than or equal to 1"),
        ({"epochs": 2.5}, 400, "epochs: Input should be a valid integer"),
        ({"epochs": True}, 400, "epochs: Input should be a valid integer"),
        ({"image_size": "abc"}, 400, "image_size: Input should be a valid integer"),
        ({"image_size": 10**30}, 400, "image_size: Input should be less than or equal to 1024"),
        ({"seed": -1}, 400, "seed: Input should be greater than or equal to 0"),
        ({"datasets": ["nosuch"]}, 404, "no dataset 'nosuch'"),
        ({"datasets": "main"}, 400, "datasets: Input should be a valid list"),
        ({"datasets": [1]}, 400, "datasets.0: Input should be a valid string"),
        ({"datasets": ["held-out"]}, 409, "evaluation-only datasets are never trained on"),
        ({"score": "yes"}, 400, "score: Input should be a valid boolean"),
        (
            {"preset": "fastest"},
            400,
            "preset: Input should be 'seed', 'demo', 'cifake', 'cifake-robust' or 'photos'",
        ),
        ({"label_check": {"method": "votes"}}, 400, "label_check: Input tag 'votes' found"),
        (
            {"label_check": {"method": "folds", "folds": 1}},
            400,
            "label_check.folds.folds: Input should be greater than or equal to 2",
        ),
        (
            {"label_check": {"method": "margins", "networks": 9}},
            400,
            "label_check.margins.networks: Input should be less than or equal to 8",
        ),
        (
            {"label_check": {"method": "margins", "folds": 3}},
            400,
            "label_check.margins.folds: Extra inputs are not permitted",
        ),
        (
            {"label_check": {"method": "folds", "networks": 2}},
            400,
            "label_check.folds.networks: Extra inputs are not permitted",
        ),
        ({"oof_method": "margins"}, 400, "oof_method: Extra inputs are not permitted"),
        (
            {"epochs": -5, "image_size": "abc", "datasets": ["nosuch"]},
            400,
            "epochs: Input should be greater than or equal to 1; "
            "image_size: Input should be a valid integer",
        ),
    ],
)
def test_bad_training_requests_are_refused_and_queue_nothing(
    app, admin_secret, body, status, message
):
    response = app.test_client().post(
        "/api/v1/train", json=body, headers={"Authorization": f"Bearer {admin_secret}"}
    )
    assert response.status_code == status
    assert message in response.get_json()["message"]
    with app.app_context():
        assert db.session.scalars(select(Job).where(Job.kind == "train")).all() == []


def test_the_service_checks_every_field_and_names_every_problem(app_ctx):
    """The admin form's path: the same ranges, without the API's schema in front."""
    with pytest.raises(TrainRequestError) as raised:
        clean_train_params({"epochs": -5, "image_size": "abc", "datasets": ["nosuch"]})
    assert str(raised.value) == (
        "epochs must be a whole number from 1 to 1000; "
        "image_size must be a whole number from 16 to 1024; no dataset 'nosuch'"
    )


def test_a_good_request_keeps_its_parameters(app, admin_secret):
    body = {"epochs": 2, "image_size": 32, "datasets": ["main"], "seed": 7, "score": False}
    response = app.test_client().post(
        "/api/v1/train", json=body, headers={"Authorization": f"Bearer {admin_secret}"}
    )
    assert response.status_code == 202
    assert response.get_json()["params"] == body


@pytest.mark.parametrize(
    "body, queued",
    [
        ({"label_check": {"method": "margins"}}, {"oof_method": "margins"}),
        (
            {"label_check": {"method": "margins", "networks": 2, "epochs": 4}},
            {"oof_method": "margins", "oof_networks": 2, "oof_epochs": 4},
        ),
        # as the CLI's --oof-method folds
        ({"label_check": {"method": "folds"}}, {"oof_method": "folds", "oof_folds": 5}),
        (
            {"label_check": {"method": "folds", "folds": 3}},
            {"oof_method": "folds", "oof_folds": 3},
        ),
        (  # a head refit's version is judged too, with the network's (its parent's) recipe
            {"head_only": True, "label_check": {"method": "margins"}},
            {"head_only": True, "oof_method": "margins"},
        ),
    ],
)
def test_a_label_check_request_queues_what_the_cli_would(app, admin_secret, body, queued):
    response = app.test_client().post(
        "/api/v1/train", json=body, headers={"Authorization": f"Bearer {admin_secret}"}
    )
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["params"] == queued


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"oof_method": "margins", "oof_folds": 3}, "oof_folds applies to oof_method folds"),
        ({"oof_networks": 2}, "oof_networks applies to oof_method margins"),
        (
            {"oof_method": "folds", "oof_networks": 2},
            "oof_networks applies to oof_method margins",
        ),
        ({"oof_epochs": 3}, "oof_epochs applies with oof_method or oof_folds"),
        ({"oof_method": "votes"}, "oof_method must be one of folds, margins"),
    ],
)
def test_the_service_refuses_label_check_fields_that_do_not_go_together(app_ctx, fields, message):
    """The form's path (and any caller of the service): the CLI's rules, flat fields."""
    with pytest.raises(TrainRequestError, match=message):
        clean_train_params(fields)


def test_a_dataset_name_with_a_nul_names_nothing(app_ctx):
    """A caller of the service that skips the HTTP checks (forms and JSON bodies refuse any NUL
    before a view runs): no query reaches PostgreSQL with it."""
    make_dataset("main")
    with pytest.raises(TrainRequestError, match=r"no dataset 'ma\\x00in'"):
        clean_train_params({"datasets": ["main", "ma\x00in"]})


def test_null_fields_mean_the_default(app_ctx):
    assert clean_train_params({"epochs": None, "head_only": False}) == {"head_only": False}
    with pytest.raises(TrainRequestError, match="unknown field"):
        clean_train_params({"epoch": 1})


def test_the_preset_names_are_the_models():
    from model.config import RECIPES, TrainConfig

    assert sorted(PRESETS) == sorted(RECIPES)  # the form, the API and the CLI offer every recipe
    assert clean_train_params({"preset": "cifake-robust"}) == {"preset": "cifake-robust"}
    for name in PRESETS:
        assert TrainConfig.preset(name).image_size > 0
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.preset("not-" + PRESETS[0])
