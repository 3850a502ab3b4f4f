"""``flask model weights fetch``: torchvision's ResNet18 weights into its cache, checked, from a
local ``file://`` URL the test serves (nothing is downloaded from the internet here)."""

from __future__ import annotations

import hashlib
import socket

import pytest
import torch
from torchvision.models import ResNet18_Weights, resnet18

from model.weights import expected_hash, published_url
from tests.services.training.test_training import tiny_dataset, train_and_wait  # noqa: F401
from webapp.models import JobState


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch.hub cache for the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def served(tmp_path):
    """A ResNet18 state dict under a torchvision-style name carrying its own SHA-256 prefix."""
    source = tmp_path / "served"
    source.mkdir()
    draft = source / "draft.pth"
    torch.manual_seed(3)
    torch.save(resnet18(weights=None).state_dict(), draft)
    digest = hashlib.sha256(draft.read_bytes()).hexdigest()
    path = draft.rename(source / f"resnet18-{digest[:8]}.pth")
    return path, digest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_default_source_is_torchvisions_published_url():
    url = published_url()
    assert url == ResNet18_Weights.IMAGENET1K_V1.url
    assert expected_hash(url) == "f37072fd"  # the prefix its file name carries


@pytest.mark.slow
def test_fetch_puts_checked_weights_where_training_finds_them(
    torch_home,
    served,
    runner,
    tiny_dataset,  # noqa: F811
    worker,
):
    path, digest = served
    result = runner.invoke(args=["model", "weights", "fetch", "--url", path.as_uri()])
    assert result.exit_code == 0, result.output
    cached = torch_home / path.name
    assert cached.read_bytes() == path.read_bytes()
    assert f"init imagenet:{digest[:12]}" in result.output
    again = runner.invoke(args=["model", "weights", "fetch", "--url", path.as_uri()])
    assert again.exit_code == 0 and "already present" in again.output
    job = train_and_wait(preset="seed", score=False)  # the seed preset starts from ImageNet
    assert job.state == JobState.SUCCEEDED, job.error
    from webapp.services.records import versions

    assert versions.get_version(job.result["version"]).init_weights == f"imagenet:{digest[:12]}"


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda path: ["--url", path.as_uri(), "--sha256", "0" * 64], "SHA-256 mismatch"),
        (lambda path: ["--url", (path.parent / "resnet18-0123abcd.pth").as_uri()], "could not"),
        (
            lambda path: ["--url", f"http://127.0.0.1:{free_port()}/resnet18-f37072fd.pth"],
            "No network?",
        ),
        (lambda path: ["--url", path.with_name("garbage-0011aabb.pth").as_uri()], "Nothing was"),
    ],
)
def test_a_failed_fetch_says_why_and_changes_nothing(
    torch_home, served, runner, make_args, message
):
    path, _ = served
    garbage = path.with_name("garbage-0011aabb.pth")
    garbage.write_bytes(b"not a state dict")  # named with a hash it does not have
    result = runner.invoke(args=["model", "weights", "fetch", *make_args(path)])
    assert result.exit_code != 0
    assert message in result.output and "Nothing was changed" in result.output
    assert not torch_home.exists() or list(torch_home.iterdir()) == []


def test_a_file_that_is_not_resnet18_weights_is_refused(torch_home, tmp_path, runner):
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a state dict at all")
    digest = hashlib.sha256(bogus.read_bytes()).hexdigest()
    named = bogus.rename(tmp_path / f"resnet18-{digest[:8]}.pth")
    result = runner.invoke(args=["model", "weights", "fetch", "--url", named.as_uri()])
    assert result.exit_code != 0 and "cannot read ImageNet weights" in result.output
    assert list(torch_home.iterdir()) == []
