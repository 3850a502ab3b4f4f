"""Grad-CAM heatmaps and their overlays."""

import io

import numpy as np
import pytest
from PIL import Image

from model.explain import gradcam, overlay


@pytest.fixture(scope="module")
def meta(tiny_run):
    return tiny_run.checkpoint_meta()


def test_heatmap_has_the_image_size_and_unit_range(tiny_run, meta, tiny_data):
    image = tiny_data[2][1]
    heatmap = gradcam(tiny_run.model, meta, image)
    assert heatmap.shape == (32, 32) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    larger = np.asarray(Image.fromarray(image).resize((48, 40)))
    assert gradcam(tiny_run.model, meta, larger, target=0).shape == (40, 48)


def test_gradcam_leaves_the_model_as_it_was(tiny_run, meta, tiny_data):
    model = tiny_run.model
    model.eval()
    before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    gradcam(model, meta, tiny_data[2][0])
    assert not model.training
    after = [p.grad for p in model.parameters()]
    assert all(
        (a is None and b is None) or (a is not None and b is not None and a.equal(b))
        for a, b in zip(before, after, strict=True)
    )
    assert not model.layer4._forward_hooks


def test_targets_give_different_maps(tiny_run, meta, tiny_data):
    image = tiny_data[2][1]
    real_map = gradcam(tiny_run.model, meta, image, target=0)
    fake_map = gradcam(tiny_run.model, meta, image, target=1)
    assert not np.allclose(real_map, fake_map)


def test_overlay_encodes_a_viewable_image(tiny_run, meta, tiny_data):
    image = tiny_data[2][1]
    heatmap = gradcam(tiny_run.model, meta, image)
    jpeg = Image.open(io.BytesIO(overlay(image, heatmap)))
    assert jpeg.format == "JPEG" and jpeg.size == (256, 256)
    rgba = Image.open(io.BytesIO(overlay(image, heatmap, fmt="PNG-RGBA", max_side=None)))
    assert rgba.mode == "RGBA" and rgba.size == (32, 32)


def test_bad_image_is_refused(tiny_run, meta):
    with pytest.raises(ValueError, match="uint8 \\(H, W, 3\\)"):
        gradcam(tiny_run.model, meta, np.zeros((2, 32, 32, 3), dtype=np.uint8))
