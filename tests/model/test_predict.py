"""Inference: shapes, calibration, memmaps, and agreement of the fast engines with eager fp32.

Each numerics test names its precision: fp32 against fp32 at fp32 tolerances (folding batch norm,
tracing or compiling only reorders float arithmetic), bf16 against fp32 at the bf16 tolerance of
``model.tuning.TOLERANCES``. bf16 autocast runs on every x86 CPU (emulated, slowly, without
AVX512-BF16/AMX), so none of these is skipped on either CPU kind."""

import numpy as np
import pytest
import torch

from model.network import build_model, forward_features
from model.predict import Predictor, outputs_from_features
from model.scores import fit_head
from model.tuning import TOLERANCES


@pytest.fixture(scope="module")
def meta(tiny_run):
    return tiny_run.checkpoint_meta()


def test_outputs_have_the_documented_shapes_and_meaning(tiny_run, meta, tiny_data):
    images = tiny_data[2]
    out = Predictor(tiny_run.model, meta).predict(images, batch_size=5)
    assert out.logits.shape == (16, 2) and out.logits.dtype == np.float32
    assert out.features.shape == (16, 512) and out.features.dtype == np.float32
    softmax = np.exp(out.logits[:, 1]) / np.exp(out.logits).sum(1)
    assert out.p_fake_raw == pytest.approx(softmax, abs=1e-6)
    scaled = out.logits / tiny_run.temperature
    assert out.p_fake == pytest.approx(np.exp(scaled[:, 1]) / np.exp(scaled).sum(1), abs=1e-6)
    assert ((out.p_fake >= 0.5) == (out.p_fake_raw >= 0.5)).all()


def test_features_are_the_penultimate_layer_fp32(tiny_run, meta, tiny_data):
    predictor = Predictor(tiny_run.model, meta, engine="eager", precision="fp32")
    out = predictor.predict(tiny_data[2][:4])
    batch = predictor.transform(torch.from_numpy(tiny_data[2][:4]).permute(0, 3, 1, 2))
    with torch.inference_mode():
        expected = forward_features(tiny_run.model, batch)
    assert np.allclose(out.features, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("engine", ["fused", "jit"])
def test_fast_engines_in_fp32_agree_with_eager_fp32(tiny_run, meta, tiny_data, engine):
    """fp32 against fp32: logits within 1e-3, p_fake within 1e-4."""
    images = tiny_data[2]
    eager = Predictor(tiny_run.model, meta, engine="eager", precision="fp32").predict(images)
    fast = Predictor(tiny_run.model, meta, engine=engine, precision="fp32").predict(images)
    assert fast.logits.dtype == np.float32
    assert np.allclose(fast.logits, eager.logits, atol=1e-3, rtol=1e-4)
    assert np.allclose(fast.p_fake, eager.p_fake, atol=1e-4)


@pytest.mark.parametrize("engine", ["eager", "fused", "jit"])
def test_engines_in_bf16_agree_with_eager_fp32_at_the_bf16_tolerance(
    tiny_run, meta, tiny_data, engine
):
    """bf16 against fp32, every engine (jit used to fail to trace under bf16 autocast)."""
    images = tiny_data[2]
    fp32 = Predictor(tiny_run.model, meta, engine="eager", precision="fp32").predict(images)
    bf16 = Predictor(tiny_run.model, meta, engine=engine, precision="bf16")
    assert bf16.precision == "bf16"
    _, _, agrees = TOLERANCES["bf16"].check(fp32, bf16.predict(images))
    assert agrees


def test_eager_bf16_agrees_with_fp32_within_a_looser_tolerance(tiny_run, meta, tiny_data):
    """bf16 keeps 8 bits of mantissa: logits within 0.1 + 2%, p_fake within 0.03, same verdicts
    except where fp32 itself is within 0.03 of the threshold."""
    images = tiny_data[2][:4]
    fp32 = Predictor(tiny_run.model, meta, engine="eager", precision="fp32").predict(images)
    bf16 = Predictor(tiny_run.model, meta, engine="eager", precision="bf16").predict(images)
    assert np.allclose(bf16.logits, fp32.logits, atol=0.1, rtol=0.02)
    assert np.abs(bf16.p_fake - fp32.p_fake).max() < 0.03
    clear = np.abs(fp32.p_fake - 0.5) > 0.03
    assert ((bf16.p_fake >= 0.5) == (fp32.p_fake >= 0.5))[clear].all()


def test_memmap_and_batch_size_do_not_change_results(tiny_run, meta, tiny_data, tmp_path):
    images = tiny_data[2]
    np.save(tmp_path / "images.npy", images)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="r")
    predictor = Predictor(tiny_run.model, meta)
    progress = []
    a = predictor.predict(mapped, batch_size=3, on_batch=lambda done, total: progress.append(done))
    b = predictor.predict(images, batch_size=16)
    assert progress[-1] == 16 and len(progress) == 6
    assert np.allclose(a.logits, b.logits, atol=1e-5)


def test_fitted_head_replaces_fc_fp32(tiny_run, meta, tiny_data):
    """A head fitted on cached features gives the same logits once copied into the network."""
    features = Predictor(tiny_run.model, meta, precision="fp32").predict(tiny_data[0]).features
    head = fit_head(features, tiny_data[1])
    model, _ = build_model(init="random", stem=meta["stem"])
    model.load_state_dict(tiny_run.model.state_dict())
    head.apply_to(model)
    out = Predictor(model, meta, precision="fp32").predict(tiny_data[2])
    assert np.allclose(out.logits, head.logits(out.features), atol=1e-4)


def test_unknown_engine_is_refused(tiny_run, meta):
    with pytest.raises(ValueError, match="unknown engine"):
        Predictor(tiny_run.model, meta, engine="turbo")


def test_compiled_engine_in_fp32_pads_the_last_batch_and_agrees_with_eager(
    tiny_run, meta, tiny_data
):
    """torch.compile with freezing, compiled once for batches of 8: 16 images in batches of
    8 and a last batch of 3 padded to 8 give eager fp32's numbers for every image."""
    images = tiny_data[2][:11]
    eager = Predictor(tiny_run.model, meta, engine="eager", precision="fp32").predict(images)
    compiled = Predictor(tiny_run.model, meta, engine="compile", precision="fp32", batch_size=8)
    out = compiled.predict(images)
    assert out.logits.shape == (11, 2) and out.features.shape == (11, 512)
    _, _, agrees = TOLERANCES["fp32"].check(eager, out)
    assert agrees


def test_outputs_from_stored_features_match_a_forward_pass(tiny_run, meta, tiny_data):
    """A head-only version scores from its parent's stored features: the same logits and
    probabilities as running its network, at its own temperature."""
    predictor = Predictor(tiny_run.model, meta, precision="fp32", engine="eager")
    out = predictor.predict(tiny_data[2])
    reused = outputs_from_features(tiny_run.model, out.features, tiny_run.temperature)
    assert np.allclose(reused.logits, out.logits, atol=1e-4)
    assert np.allclose(reused.p_fake, out.p_fake, atol=1e-5)
    assert np.allclose(reused.p_fake_raw, out.p_fake_raw, atol=1e-5)
    assert np.array_equal(reused.features, out.features)
    hotter = outputs_from_features(tiny_run.model, out.features, 4 * tiny_run.temperature)
    assert np.allclose(hotter.p_fake_raw, reused.p_fake_raw)
    assert np.abs(hotter.p_fake - 0.5).mean() < np.abs(reused.p_fake - 0.5).mean()
