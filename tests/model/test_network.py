"""build_model: two outputs, ImageNet weights from a checked file or the cache, else random."""

import hashlib

import pytest
import torch
from torchvision.models import resnet18

from model.network import WeightsError, build_model, forward_features


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A TORCH_HOME with no cached weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home"


@pytest.fixture
def imagenet_like_file(tmp_path):
    """A torchvision ResNet18 state dict (1000 classes) written by the test, and its SHA-256."""
    torch.manual_seed(123)
    state = resnet18(weights=None).state_dict()
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), state


def test_random_init_gives_two_logits(empty_torch_home):
    model, init = build_model()
    assert init == "random"
    assert model.fc.out_features == 2
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


def test_weights_file_with_matching_sha_is_loaded(imagenet_like_file):
    path, digest, state = imagenet_like_file
    model, init = build_model(weights_path=str(path), weights_sha256=digest)
    assert init == f"imagenet:{digest[:12]}"
    assert torch.equal(model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    assert model.fc.out_features == 2


def test_wrong_sha_is_a_clear_error(imagenet_like_file):
    path, digest, _ = imagenet_like_file
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(WeightsError, match="SHA-256 mismatch"):
        build_model(weights_path=str(path), weights_sha256=wrong)


def test_missing_named_file_is_an_error_but_absent_cache_means_random(tmp_path, empty_torch_home):
    with pytest.raises(WeightsError, match="not found"):
        build_model(weights_path=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match="not found"):
        build_model(init="imagenet")
    assert build_model(init="auto")[1] == "random"


def test_cache_file_is_checked_against_the_hash_in_its_name(empty_torch_home, imagenet_like_file):
    path, _, _ = imagenet_like_file
    cached = empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())  # our own weights: their hash is not f37072fd...
    with pytest.raises(WeightsError, match="SHA-256 mismatch"):
        build_model()


def test_a_file_that_is_not_a_resnet18_is_rejected(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="not a torchvision ResNet18"):
        build_model(weights_path=str(path))


def test_small_stem_keeps_resolution(empty_torch_home):
    model, _ = build_model(stem="small")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    activations = model.layer4(
        model.layer3(
            model.layer2(model.layer1(model.maxpool(model.conv1(torch.zeros(1, 3, 32, 32)))))
        )
    )
    assert activations.shape[-2:] == (4, 4)
    assert forward_features(model.eval(), torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    medium, _ = build_model(stem="medium")
    assert medium.layer1(medium.maxpool(medium.conv1(torch.zeros(1, 3, 32, 32)))).shape[-1] == 16
    with pytest.raises(ValueError, match="unknown stem"):
        build_model(stem="huge")
