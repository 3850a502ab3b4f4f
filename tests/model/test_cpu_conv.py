"""The im2col weight gradient for tiny convolution outputs matches nn.Conv2d's."""

import pytest
import torch
from torch import nn

from model.cpu_conv import SmallOutputConv2d, patch_small_convolutions, unpatch_small_convolutions
from model.network import build_model


@pytest.mark.parametrize(
    ("size", "stride", "in_channels", "channels_last"),
    [(1, 1, 8, True), (2, 1, 8, False), (4, 2, 6, True), (3, 2, 4, False), (8, 1, 4, True)],
)
def test_gradients_match_the_plain_convolution(size, stride, in_channels, channels_last):
    torch.manual_seed(0)
    plain = nn.Conv2d(in_channels, 5, 3, stride=stride, padding=1, bias=False)
    fast = SmallOutputConv2d(in_channels, 5, 3, stride=stride, padding=1, bias=False)
    fast.load_state_dict(plain.state_dict())
    layout = torch.channels_last if channels_last else torch.contiguous_format
    inputs = torch.randn(6, in_channels, size, size).contiguous(memory_format=layout)
    grads = []
    for conv in (plain, fast):
        x = inputs.clone().requires_grad_(True)
        out = conv(x)
        (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
        grads.append((out.detach(), x.grad, conv.weight.grad))
    for reference, candidate in zip(grads[0], grads[1], strict=True):
        assert torch.allclose(reference, candidate, atol=1e-5, rtol=1e-4)


def test_patching_keeps_the_state_dict_and_can_be_undone():
    model, _ = build_model(init="random")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    patch_small_convolutions(model)
    assert isinstance(model.layer4[0].conv1, SmallOutputConv2d)
    assert model.state_dict().keys() == before.keys()
    unpatch_small_convolutions(model)
    assert type(model.layer4[0].conv1) is nn.Conv2d
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
