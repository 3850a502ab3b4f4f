"""Crops at native resolution: the sampler, pooled scoring, and the input mode in checkpoints.

Images are generated here with a distinct value per pixel position, so a crop's position in its
image can be read off its first pixel and any interpolation would show as a value the image does
not hold.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import TrainConfig
from model.crops import (
    CropView,
    InputMode,
    NativeImages,
    decode_native,
    fill_colour,
    grid_offsets,
)
from model.network import build_model
from model.predict import Predictor
from model.train import train

FILL = (7, 7, 7)


def coded_image(height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3): channel 0 is the row, channel 1 the column (mod 256), channel 2 = 200."""
    rows, cols = np.indices((height, width))
    return np.stack([rows % 256, cols % 256, np.full_like(rows, 200)], axis=-1).astype(np.uint8)


def as_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_random_crops_have_the_crop_size_and_are_blocks_of_the_native_pixels():
    mode = InputMode("crops", crop_size=16, downscale=1.0)
    images = [coded_image(40, 64), coded_image(16, 30), coded_image(50, 17)]
    view = CropView(NativeImages(images, mode), "random", FILL, seed=3)
    assert view.shape == (3, 16, 16, 3)
    starts = set()
    for epoch in range(20):
        view.set_epoch(epoch)
        crops = view[np.arange(3)]
        assert crops.shape == (3, 16, 16, 3) and crops.dtype == np.uint8
        for image, crop in zip(images, crops, strict=True):
            top, left = int(crop[0, 0, 0]), int(crop[0, 0, 1])
            assert np.array_equal(crop, image[top : top + 16, left : left + 16])
        starts.add((int(crops[0, 0, 0, 0]), int(crops[0, 0, 0, 1])))
    assert len(starts) > 5  # the position is drawn afresh each epoch


def test_a_random_crop_depends_on_the_seed_epoch_and_row_only():
    """Whichever batch, order or process reads a row, it gets the same crop: what lets
    distributed ranks see the crops one process would."""
    mode = InputMode("crops", crop_size=8)
    images = NativeImages([coded_image(30, 30 + i) for i in range(6)], mode)
    whole = CropView(images, "random", FILL, seed=4)
    whole.set_epoch(2)
    together = whole[np.arange(6)]
    apart = CropView(images, "random", FILL, seed=4)
    apart.set_epoch(2)
    backwards = np.stack([apart[int(row)] for row in range(5, -1, -1)])[::-1]
    assert np.array_equal(together, backwards)
    assert np.array_equal(whole[np.arange(6)], together)  # read again in the same epoch
    whole.set_epoch(3)
    assert not np.array_equal(whole[np.arange(6)], together)


def test_the_same_seed_draws_the_same_crops():
    mode = InputMode("crops", crop_size=8)
    images = NativeImages([coded_image(30, 30)] * 4, mode)
    first = CropView(images, "random", FILL, seed=1)[np.arange(4)]
    again = CropView(images, "random", FILL, seed=1)[np.arange(4)]
    other = CropView(images, "random", FILL, seed=2)[np.arange(4)]
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_an_image_smaller_than_the_crop_is_padded_never_enlarged():
    mode = InputMode("crops", crop_size=16)
    small = coded_image(10, 12)
    for kind in ("random", "centre", "grid"):
        crop = CropView(NativeImages([small], mode), kind, FILL)[0]
        assert crop.shape == (16, 16, 3)
        inside = crop[3:13, 2:14]  # centred: (16 - 10) // 2 rows and (16 - 12) // 2 columns
        assert np.array_equal(inside, small)
        outside = np.ones((16, 16), dtype=bool)
        outside[3:13, 2:14] = False
        assert (crop[outside] == FILL).all()


@pytest.mark.parametrize(
    ("size", "downscale", "expected"),
    [
        ((64, 48), 1.0, (48, 64)),  # native: untouched
        ((64, 48), 2.0, (24, 32)),  # halved
        ((64, 48), 1.5, (32, 43)),
        ((40, 30), 2.0, (16, 21)),  # stops where the short side meets the 16 px crop
        ((12, 10), 2.0, (10, 12)),  # smaller than the crop already: never enlarged
    ],
)
def test_decoding_downscales_by_the_factor_at_most_and_never_below_the_crop(
    size, downscale, expected
):
    width, height = size
    mode = InputMode("crops", crop_size=16, downscale=downscale)
    pixels = decode_native(as_png(coded_image(height, width)), mode)
    assert pixels.shape == (*expected, 3) and pixels.dtype == np.uint8
    if downscale == 1.0:
        assert np.array_equal(pixels, coded_image(height, width))


def test_a_downscale_beyond_two_or_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="downscale must be from 1 to 2"):
        InputMode("crops", downscale=3.0)
    with pytest.raises(ValueError, match="unknown input mode"):
        TrainConfig(input_mode="tiles")


@pytest.fixture(scope="module")
def crop_network():
    torch.manual_seed(0)
    model, _ = build_model(init="random")
    model.eval()
    meta = {
        "architecture": "resnet18",
        "stem": "imagenet",
        "image_size": 16,
        "mean": [0.4, 0.5, 0.6],
        "std": [0.2, 0.25, 0.3],
        "class_order": ["real", "fake"],
        "temperature": 1.5,
        "input": InputMode("crops", crop_size=16, grid=2).to_dict(),
    }
    return model, meta


def hand_pooled_logits(model, meta, image: np.ndarray) -> np.ndarray:
    """The mean of the 2x2 grid's logits, each crop cut and normalised by hand."""
    height, width = image.shape[:2]
    rows, cols = [0, height - 16], [0, width - 16]
    mean = torch.tensor(meta["mean"]).view(3, 1, 1)
    std = torch.tensor(meta["std"]).view(3, 1, 1)
    logits = []
    for top in rows:
        for left in cols:
            crop = torch.from_numpy(image[top : top + 16, left : left + 16].copy())
            batch = ((crop.permute(2, 0, 1).float() / 255 - mean) / std)[None]
            with torch.inference_mode():
                logits.append(model(batch)[0].numpy())
    return np.mean(logits, axis=0)


@pytest.mark.parametrize("engine", ["eager", "fused", "jit"])
def test_pooled_scoring_is_the_mean_of_the_grid_crops_logits(crop_network, engine):
    model, meta = crop_network
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(20, 28, 3), (33, 17, 3)]]
    images.append(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    predictor = Predictor(model, meta, precision="fp32", engine=engine, batch_size=8)
    out = predictor.predict(images, batch_size=8)
    expected = np.stack([hand_pooled_logits(model, meta, image) for image in images])
    assert out.logits == pytest.approx(expected, abs=1e-4, rel=1e-3)
    scaled = expected / 1.5
    p_fake = np.exp(scaled[:, 1]) / np.exp(scaled).sum(1)
    assert out.p_fake == pytest.approx(p_fake, abs=1e-5)
    assert grid_offsets(28, 16, 2) == [0, 12] and grid_offsets(16, 16, 2) == [0, 0]


def test_a_batch_smaller_than_one_grid_still_scores_every_image(crop_network):
    model, meta = crop_network
    images = [coded_image(24, 24), coded_image(30, 20), coded_image(18, 40)]
    whole = Predictor(model, meta, precision="fp32", engine="eager").predict(images)
    piecewise = Predictor(model, meta, precision="fp32", engine="eager").predict(
        images, batch_size=1
    )
    assert piecewise.logits == pytest.approx(whole.logits, abs=1e-5)


def test_the_input_mode_round_trips_through_the_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (24, 30, 3), dtype=np.uint8) for _ in range(8)]
    labels = np.array([0, 1] * 4)
    config = TrainConfig(
        epochs=1,
        image_size=16,
        batch_size=4,
        init="random",
        precision="fp32",
        input_mode="crops",
        downscale=1.5,
        crop_grid=2,
    )
    result = train(images[:6], labels[:6], images[6:], labels[6:], config, [0.5] * 3, [0.25] * 3)
    path = save_checkpoint(tmp_path / "v.pt", result.model, result.checkpoint_meta())
    model, meta = load_checkpoint(path)
    assert InputMode.from_meta(meta) == InputMode("crops", 16, 1.5, 2)
    assert TrainConfig.from_dict(meta["train_args"]).input_settings() == InputMode.from_meta(meta)
    predictor = Predictor(model, meta, precision="fp32", engine="eager")
    assert predictor.input_mode.crops and predictor.input_mode.crops_per_image == 4
    # the validation logits the temperature was fitted on are the pooled ones scoring gives
    # (arrays are taken as pixels already at the crops' scale; files are decoded and downscaled)
    assert predictor.predict(images[6:]).logits == pytest.approx(result.val_logits, abs=1e-4)


def test_a_checkpoint_without_an_input_entry_loads_as_resize(tmp_path, crop_network):
    model, meta = crop_network
    old = {key: value for key, value in meta.items() if key != "input"}
    path = save_checkpoint(tmp_path / "old.pt", model, old)
    _, loaded = load_checkpoint(path)
    assert "input" not in loaded
    mode = InputMode.from_meta(loaded)
    assert mode == InputMode("resize", crop_size=16) and mode.crops_per_image == 1
    assert TrainConfig.from_dict({"epochs": 2}).input_mode == "resize"
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    predictor = Predictor(model, loaded, precision="fp32", engine="eager")
    batch = predictor.transform(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.inference_mode():
        expected = model(batch).numpy()
    assert predictor.predict(images).logits == pytest.approx(expected, abs=1e-5)


def test_padding_uses_the_mean_colour_so_it_normalises_to_zero():
    assert fill_colour([0.5, 0.0, 1.0]) == (128, 0, 255)


def test_a_crops_heatmap_sees_the_whole_image_at_its_own_scale(crop_network):
    from model.explain import gradcam

    model, meta = crop_network
    image = np.random.default_rng(2).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    heat = gradcam(model, meta, image)
    assert heat.shape == (64, 96) and heat.max() == pytest.approx(1.0) and heat.min() == 0.0
    # resized to the 16 px input, the last stage is one cell: nothing to localise
    resized_meta = {key: value for key, value in meta.items() if key != "input"}
    assert (gradcam(model, resized_meta, image) == 0).all()


def test_the_compiled_engine_pools_crops_as_eager_does(crop_network):
    """Compiled for passes of 8 crops: a 2x2 grid is 4, so two images a pass and the last one
    padded; a batch size of 3 is smaller than one grid and runs it in pieces."""
    model, meta = crop_network
    rng = np.random.default_rng(9)
    images = [rng.integers(0, 256, (24, 20 + 4 * i, 3), dtype=np.uint8) for i in range(5)]
    eager = Predictor(model, meta, precision="fp32", engine="eager").predict(images)
    for batch_size in (8, 3):
        compiled = Predictor(model, meta, precision="fp32", engine="compile", batch_size=batch_size)
        out = compiled.predict(images)
        assert out.logits == pytest.approx(eager.logits, abs=1e-3, rel=1e-3)
