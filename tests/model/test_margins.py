"""Area under the margin: each training image's mean margin, recorded while the network trains."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model import out_of_fold
from model.margins import (
    VIEWS,
    MarginRecorder,
    average_margins,
    describe_recipe,
    label_margins,
    network_recipe,
    p_fake_from_margins,
    training_margins,
)
from model.parallel import DistributedContext
from model.train import train
from tests.model.conftest import tiny_config


def test_a_margin_is_the_label_logit_minus_the_largest_other():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 4.0], [1.0, 1.0, -2.0]])
    labels = torch.tensor([0, 1, 1])
    assert label_margins(logits, labels) == pytest.approx([1.5, -1.0, 0.0])


def test_the_recorder_averages_over_the_batches_that_held_an_image():
    recorder = MarginRecorder(4)
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    recorder.add(np.array([0, 2]), logits, torch.tensor([0, 0]))  # margins 1 and -2
    recorder.add(np.array([0, 1]), logits, torch.tensor([1, 1]))  # margins -1 and 2
    mean = recorder.mean()
    assert mean[:3] == pytest.approx([0.0, 2.0, -2.0])
    assert np.isnan(mean[3])  # no batch held it


def test_p_fake_is_the_logistic_of_the_margin_towards_the_label():
    p_fake = p_fake_from_margins([0.0, np.log(3.0), np.log(3.0), np.nan], [1, 1, 0, 0])
    assert p_fake == pytest.approx([0.5, 0.75, 0.25, 0.5])
    with pytest.raises(ValueError, match="3 labels but 2 margins"):
        p_fake_from_margins([0.0, 1.0], [0, 1, 0])


def test_flipped_labels_keep_the_lowest_margins(tiny_data, flipped_tiny):
    images, _, given, flipped = flipped_tiny
    result = train(
        images, given, None, None, tiny_config(epochs=6), *tiny_data[4:], record_margins=True
    )
    assert result.margins.shape == (images.shape[0],) and not np.isnan(result.margins).any()
    # The network learns the truth from the other 61 images before it can memorise the three
    # flips, so over the run their margins stay the lowest: the batches were matched to their
    # images (a wrong index would scatter them).
    assert set(np.argsort(result.margins)[:3].tolist()) == set(flipped.tolist())
    margins = training_margins(images, given, tiny_config(epochs=6), *tiny_data[4:])
    assert margins == pytest.approx(result.margins)


def test_the_margins_of_several_networks_are_averaged(tiny_data, flipped_tiny):
    images, _, given, _ = flipped_tiny
    mean, std = tiny_data[4:]
    first = tiny_config(epochs=2, seed=3)
    # network 2 takes the next turn: seeded 4, with the medium stem
    one = [
        training_margins(images, given, network_recipe(first, number), mean, std)
        for number in (0, 1)
    ]
    progress, runs = [], []
    both = training_margins(
        images, given, first, mean, std, on_progress=progress.append, networks=2, runs=runs
    )
    assert not np.allclose(one[0], one[1])  # the second network is another network
    assert both == pytest.approx((one[0] + one[1]) / 2)
    assert [(run.config.seed, run.config.stem) for run in runs] == [(3, "imagenet"), (4, "medium")]
    # progress counts the epochs of both networks: 1, 2, 3, 4 of 4
    epochs = [(u["epoch"], u["epochs"]) for u in progress if u.get("phase") == "epoch"]
    assert epochs == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with pytest.raises(ValueError, match="networks must be at least 1"):
        training_margins(images, given, tiny_config(), mean, std, networks=0)


def test_networks_of_one_recipe_differ_only_in_their_seed(tiny_data, flipped_tiny):
    images, _, given, _ = flipped_tiny
    runs = []
    training_margins(
        images, given, tiny_config(seed=3), *tiny_data[4:], networks=2, runs=runs, varied=False
    )
    recipes = [(run.config.seed, run.config.stem, run.config.residual) for run in runs]
    assert recipes == [(3, "imagenet", "none"), (4, "imagenet", "none")]


def test_margins_networks_take_turns_over_the_views():
    plain = tiny_config(seed=7)
    recipes = [network_recipe(plain, number) for number in range(len(VIEWS) + 1)]
    assert [(r.seed, r.residual, r.stem) for r in recipes] == [
        (7, "none", "imagenet"),
        (8, "none", "medium"),
        (9, "npr", "imagenet"),
        (10, "npr", "medium"),
        (11, "none", "imagenet"),  # a fifth starts the turn again
    ]
    assert [describe_recipe(r, plain) for r in recipes[:4]] == [
        "the recipe",
        "stem medium",
        "residual input npr",
        "residual input npr and stem medium",
    ]
    # a recipe that has the residual input and the medium stem already turns them off
    own = tiny_config(residual="npr", stem="medium")
    assert [(r.residual, r.stem) for r in (network_recipe(own, n) for n in range(4))] == [
        ("npr", "medium"),
        ("npr", "imagenet"),
        ("none", "medium"),
        ("none", "imagenet"),
    ]
    assert network_recipe(plain, 3, varied=False) == replace(plain, seed=10)


def test_the_recorder_keeps_each_epoch_apart():
    recorder = MarginRecorder(3)
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    recorder.add(np.array([0, 1]), logits, torch.tensor([0, 0]), epoch=1)  # margins 1 and -2
    recorder.add(np.array([0, 1]), logits, torch.tensor([1, 1]), epoch=2)  # margins -1 and 2
    assert recorder.mean()[:2] == pytest.approx([0.0, 0.0])  # over the run
    by_epoch = recorder.by_epoch()
    assert by_epoch.shape == (2, 3)
    assert by_epoch[:, :2] == pytest.approx(np.array([[1.0, -2.0], [-1.0, 2.0]]))
    assert np.isnan(by_epoch[:, 2]).all()  # no batch held it


def test_a_run_without_margins_records_none(tiny_run):
    assert tiny_run.margins is None


def test_margins_are_recorded_in_one_process_only(tiny_data):
    context = DistributedContext(
        rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), backend="gloo"
    )
    with pytest.raises(ValueError, match="margins are recorded in one process"):
        train(
            *tiny_data[:4], tiny_config(), *tiny_data[4:], distributed=context, record_margins=True
        )


@pytest.fixture
def timings_that_disagree(monkeypatch):
    """``precision="auto"``'s timed steps, choosing fp32 the first time and bf16 after: two
    timings on a loaded machine can choose apart, which is what the callers must not show for
    networks of one architecture."""
    import model.tuning

    calls = []

    def choose(image_size, batch_size, device, *args, stem="imagenet", residual="none", **kw):
        calls.append((image_size, batch_size, stem, residual))
        precision = "fp32" if len(calls) == 1 else "bf16"
        return {"precision": precision, "small_conv_grad": False}

    monkeypatch.setattr(model.tuning, "tune_training", choose)
    return calls


def test_networks_of_one_architecture_train_in_one_precision(
    tiny_data, flipped_tiny, timings_that_disagree, monkeypatch
):
    images, _, given, _ = flipped_tiny
    mean, std = tiny_data[4:]
    runs = []
    auto = tiny_config(epochs=1, precision="auto")
    training_margins(images, given, auto, mean, std, networks=2, runs=runs, varied=False)
    assert [run.policy for run in runs] == ["cpu/fp32/channels_last"] * 2
    assert len(timings_that_disagree) == 1  # resolved once, for the first network
    trained = []

    def recording(*args, **kwargs):
        result = train(*args, **kwargs)
        trained.append(result.policy)
        return result

    monkeypatch.setattr(out_of_fold, "train", recording)  # to read each fold's policy
    timings_that_disagree.clear()
    out_of_fold.out_of_fold_p_fake(images, given, auto, mean, std, folds=2)
    assert trained == ["cpu/fp32/channels_last"] * 2 and len(timings_that_disagree) == 1


def test_each_architecture_of_the_turns_is_timed_for_itself(
    tiny_data, flipped_tiny, timings_that_disagree
):
    """The medium stem's network is timed as itself: at 32 px bf16 can win for it and lose for
    the usual stem. The fifth network repeats the first one's view and its precision."""
    images, _, given, _ = flipped_tiny
    mean, std = tiny_data[4:]
    runs = []
    auto = tiny_config(epochs=1, precision="auto")
    training_margins(images, given, auto, mean, std, networks=5, runs=runs)
    size = auto.image_size
    assert [call[2:] for call in timings_that_disagree] == [
        ("imagenet", "none"),
        ("medium", "none"),
        ("imagenet", "npr"),
        ("medium", "npr"),
    ]
    assert {call[0] for call in timings_that_disagree} == {size}
    assert [run.policy.split("/")[1] for run in runs] == ["fp32", "bf16", "bf16", "bf16", "fp32"]
    assert [run.config.stem for run in runs] == ["imagenet", "medium", "imagenet", "medium"] + [
        "imagenet"
    ]


def test_a_resolver_given_is_used_instead_of_timed_steps(tiny_data, flipped_tiny, monkeypatch):
    import model.tuning

    monkeypatch.setattr(model.tuning, "tune_training", lambda *a, **k: pytest.fail("timed"))
    images, _, given, _ = flipped_tiny
    mean, std = tiny_data[4:]
    seen, runs = [], []

    def resolve(recipe):
        seen.append(recipe.stem)
        return replace(recipe, precision="fp32", small_conv_grad=False)

    auto = tiny_config(epochs=1, precision="auto")
    training_margins(images, given, auto, mean, std, networks=2, runs=runs, resolve=resolve)
    assert seen == ["imagenet", "medium"]
    assert all(run.policy == "cpu/fp32/channels_last" for run in runs)
    out_of_fold.out_of_fold_p_fake(images, given, auto, mean, std, folds=2, resolve=resolve)
    assert seen == ["imagenet", "medium", "imagenet"]  # once, for the first fold


def test_an_image_is_averaged_over_the_networks_that_hold_its_margin():
    averaged = average_margins([np.array([1.0, np.nan, np.nan]), np.array([3.0, 2.0, np.nan])])
    assert averaged[:2] == pytest.approx([2.0, 2.0])
    assert np.isnan(averaged[2])  # no network's batches held it
