"""The light models: K-fold out-of-sample probabilities, label-issue and OOD scores, the head."""

import numpy as np
import pytest

from model.scores import (
    OODScorer,
    fit_head,
    label_issue_scores,
    out_of_sample_probabilities,
)
from tests.model.factories import separable_features


def test_out_of_sample_probabilities_have_one_value_per_image_in_range():
    features, labels = separable_features()
    oos = out_of_sample_probabilities(features, labels, folds=5, seed=0)
    assert oos.shape == (200,) and ((oos >= 0) & (oos <= 1)).all()
    assert ((oos >= 0.5) == labels).mean() > 0.95


def test_a_flipped_label_gets_a_high_label_issue_score():
    features, labels = separable_features()
    noisy = labels.copy()
    noisy[7] = 1 - noisy[7]
    scores = label_issue_scores(noisy, out_of_sample_probabilities(features, noisy))
    assert scores[7] > 0.9
    assert int(np.argmax(scores)) == 7
    assert np.median(np.delete(scores, 7)) < 0.05


def test_label_issue_score_is_one_minus_the_probability_of_the_label():
    assert label_issue_scores([0, 1], [0.2, 0.2]) == pytest.approx([0.2, 0.8])
    with pytest.raises(ValueError, match="labels but"):
        label_issue_scores([0, 1], [0.2])


def test_folds_shrink_for_tiny_classes_and_one_class_is_refused():
    features, labels = separable_features(count=6)
    assert out_of_sample_probabilities(features, labels, folds=5).shape == (6,)
    with pytest.raises(ValueError, match="both classes"):
        out_of_sample_probabilities(features, np.zeros(6, dtype=int))


def test_head_reproduces_the_logistic_model_probabilities():
    features, labels = separable_features()
    head = fit_head(features, labels)
    logits = head.logits(features)
    assert head.weight.shape == (2, 16) and head.bias.shape == (2,)
    p_fake = 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))
    assert ((p_fake >= 0.5) == labels).mean() > 0.95
    shifted = features + np.float32(100)  # the folded standardisation must follow the shift
    head_shifted = fit_head(shifted, labels)
    assert np.allclose(head_shifted.logits(shifted), logits, atol=1e-2)


def test_far_away_points_score_higher_than_training_like_points():
    rng = np.random.default_rng(1)
    train = rng.normal(0, 1, size=(300, 8)) + np.array([5.0] + [0.0] * 7)
    scorer = OODScorer(k=5).fit(train)
    similar = rng.normal(0, 1, size=(100, 8)) + np.array([5.0] + [0.0] * 7)
    far = rng.normal(0, 1, size=(20, 8)) + np.array([0.0, 5.0] + [0.0] * 6)
    similar_scores, far_scores = scorer.score(similar), scorer.score(far)
    assert ((similar_scores >= 0) & (similar_scores <= 1)).all()
    assert 0.2 < np.median(similar_scores) < 0.8
    assert far_scores.min() > 0.95 and far_scores.mean() > similar_scores.mean()


def test_training_images_are_scored_without_matching_themselves():
    rng = np.random.default_rng(2)
    train = rng.normal(0, 1, size=(200, 8))
    scorer = OODScorer(k=3).fit(train)
    own = scorer.score(train, exclude_self=True)
    assert 0.4 < own.mean() < 0.6  # uniform over the training distribution, by construction
    assert scorer.score(train).mean() < 0.2  # counting itself, every image looks central


def test_training_scores_are_the_exclude_self_scores_without_a_second_search():
    rng = np.random.default_rng(3)
    train = rng.normal(0, 1, size=(150, 8))
    scorer = OODScorer(k=4).fit(train)
    assert np.array_equal(scorer.training_scores(), scorer.score(train, exclude_self=True))
    sampled = OODScorer(k=4, max_reference=100).fit(train)
    assert sampled.training_scores() is None  # a sample was indexed: the caller searches
