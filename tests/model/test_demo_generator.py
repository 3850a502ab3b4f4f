"""The demo's image generator without the app (``model.demo_generator``): seeded, sized, and its
fakes decoded rather than copied."""

from __future__ import annotations

import numpy as np
import torch

from model.demo_generator import DemoAutoencoder, generate_images


def _generate(seed: int, sizes=(16, 24)):
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    return generate_images(streams, 6, 6, sizes, 3, 4, seed)


def test_the_same_streams_and_seed_give_the_same_pixels():
    reals, fakes, figures = _generate(5)
    again_reals, again_fakes, _ = _generate(5)
    assert len(reals) == len(fakes) == 6 and figures["steps"] == 3
    for first, second in zip(reals + fakes, again_reals + again_fakes, strict=True):
        assert np.array_equal(first.pixels, second.pixels)
        assert (first.true_label, first.source) == (second.true_label, second.source)
    _, other_fakes, _ = _generate(6)
    assert not all(
        a.pixels.shape == b.pixels.shape and np.array_equal(a.pixels, b.pixels)
        for a, b in zip(fakes, other_fakes, strict=True)
    )


def test_both_classes_take_their_sides_from_the_given_sizes():
    reals, fakes, _ = _generate(1, sizes=(16, 24))
    assert {image.true_label for image in reals} == {"real"}
    assert {image.true_label for image in fakes} == {"fake"}
    for image in reals + fakes:
        height, width, channels = image.pixels.shape
        assert {height, width} <= {16, 24} and channels == 3
        assert image.pixels.dtype == np.uint8


def test_the_autoencoder_decodes_any_multiple_of_eight():
    model = DemoAutoencoder().eval()
    with torch.inference_mode():
        for height, width in ((16, 24), (40, 8)):
            out = model(torch.rand(2, 3, height, width))
            assert out.shape == (2, 3, height, width)
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
