"""The transform network: shapes, value range, any input size."""

import pytest
import torch

from fast_style.models import FastTransformerNet, InstanceNorm, TransformerNet, build_model, model_config


@pytest.mark.parametrize("cls", [TransformerNet, FastTransformerNet])
@pytest.mark.parametrize("size", [(32, 32), (33, 47), (30, 61), (5, 7)])
def test_any_size_in_any_size_out_in_unit_range(cls, size):
    net = cls(channels=(4, 8, 8), num_residual=1)
    x = torch.rand(2, 3, *size)
    y = net(x)
    assert y.shape == x.shape
    assert y.min().item() >= 0 and y.max().item() <= 1


def test_default_architecture_matches_johnson():
    net = TransformerNet()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in (convs[0], convs[-1])] == [(9, 9), (9, 9)]
    assert [c.stride for c in convs[1:3]] == [(2, 2), (2, 2)]
    assert len(net.residuals) == 5
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    norms = [m for m in net.modules() if isinstance(m, InstanceNorm)]
    assert norms and all(n.affine for n in norms)
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules())


@pytest.mark.parametrize("cls, arch", [(TransformerNet, "johnson"), (FastTransformerNet, "fast")])
def test_registry_rebuilds_from_config(cls, arch):
    net = cls(channels=(8, 16, 16), num_residual=2)
    cfg = model_config(net)
    assert cfg == {"arch": arch, "kwargs": {"channels": [8, 16, 16], "num_residual": 2}}
    clone = build_model(cfg["arch"], **cfg["kwargs"])
    clone.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(1, 3, 20, 24)
    assert torch.equal(clone(x), net(x))


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        build_model("nope")


def test_fast_network_needs_far_fewer_multiply_adds():
    def macs(net: torch.nn.Module) -> int:
        total = 0

        def hook(module, inputs, output):
            nonlocal total
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += k * output.numel()

        handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        net(torch.rand(1, 3, 64, 64))
        for h in handles:
            h.remove()
        return total

    assert macs(FastTransformerNet()) * 10 < macs(TransformerNet())


def _upsample_then_conv(x, weight, bias, groups):
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    return torch.nn.functional.conv2d(
        torch.nn.functional.pad(up, (1, 1, 1, 1), mode="reflect"), weight, bias, groups=groups
    )


@pytest.mark.parametrize("cin, cout, groups", [(5, 3, 1), (6, 6, 6)])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5)])
def test_upsample_conv_at_input_resolution_equals_upsample_then_conv(cin, cout, groups, size):
    from fast_style.models.layers import upsample2x_conv3x3

    torch.manual_seed(0)
    x = torch.randn(2, cin, *size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(cout, cin // groups, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(cout, dtype=torch.float64, requires_grad=True)
    ours = upsample2x_conv3x3(x, weight, bias, groups=groups)
    ref = _upsample_then_conv(x, weight, bias, groups)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)
    # Training goes through it too: the gradients must agree.
    grads = torch.autograd.grad((ours * ref.detach()).sum(), (x, weight, bias))
    ref_grads = torch.autograd.grad((ref * ref.detach()).sum(), (x, weight, bias))
    for g, r in zip(grads, ref_grads, strict=False):
        torch.testing.assert_close(g, r)


def test_upsample_conv_in_bands_of_rows_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_style.models import layers

    torch.manual_seed(0)
    x, weight, bias = torch.randn(1, 4, 9, 6), torch.randn(3, 4, 3, 3), torch.randn(3)
    with torch.no_grad():
        whole = layers.upsample2x_conv3x3(x, weight, bias)
        monkeypatch.setattr(layers, "_BAND_ELEMENTS", 4 * 3 * 7 * 2)  # two rows per band
        banded = layers.upsample2x_conv3x3(x, weight, bias)
    torch.testing.assert_close(banded, whole)
    torch.testing.assert_close(whole, _upsample_then_conv(x, weight, bias, 1))


@pytest.mark.slow
@pytest.mark.parametrize("cls", [TransformerNet, FastTransformerNet])
def test_recorded_norm_statistics_reproduce_the_whole_image(cls):
    torch.manual_seed(0)
    net = cls(channels=(4, 8, 8), num_residual=1).eval()
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        whole = net(x)
        stats = net.record_norm_statistics(x, band_elements=64)  # bands of a few rows: same result
        assert len(stats) == len(net.instance_norms())
        with net.shared_norm_statistics(stats):
            shared = net(x)
            top = net.forward_aligned(x[..., :48, :])  # a tile normalized like the whole image
    assert torch.allclose(shared, whole, atol=1e-5)
    inside = 48 - net.receptive_radius()  # rows that see no edge of the tile
    assert torch.allclose(top[..., :inside, :], whole[..., :inside, :], atol=1e-5)
    assert all(norm.statistics is None and not norm.recording for norm in net.instance_norms())


@pytest.mark.parametrize("cls", [TransformerNet, FastTransformerNet])
@pytest.mark.parametrize("num_residual", [0, 2])
def test_receptive_radius_is_the_context_one_output_pixel_reads(cls, num_residual):
    """Tiles keep this margin: an output pixel that read further would differ between tiles."""
    torch.manual_seed(0)
    net = cls(channels=(8, 16, 16), num_residual=num_residual).eval()
    reach = 0
    for _ in range(3):  # a few images, so no dead ReLU hides a path
        x = torch.rand(1, 3, 128, 128)
        stats = net.record_norm_statistics(x)  # fixed statistics, else every pixel reads the whole image
        for c in range(60, 64):  # the four positions on the stride-4 grid
            xi = x.clone().requires_grad_(True)
            with net.shared_norm_statistics(stats):
                net.forward_aligned(xi)[0, :, c, c].sum().backward()
            rows = torch.nonzero(xi.grad.abs().sum((0, 1, 3))).flatten()
            if rows.numel():  # all ReLUs around the pixel closed: nothing to measure
                reach = max(reach, c - int(rows.min()), int(rows.max()) - c)
    assert reach == net.receptive_radius()


def test_instance_norm_matches_torch_and_loads_its_state_dict():
    reference = torch.nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.2, 0.2)
    norm = InstanceNorm(6)
    norm.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 6, 9, 11)
    assert torch.allclose(norm(x), reference(x), atol=1e-6)
    norm.statistics = (x.mean((2, 3)), x.var((2, 3), unbiased=False))
    assert torch.allclose(norm(x.clone()), reference(x), atol=1e-5)


@pytest.mark.parametrize("cls", [TransformerNet, FastTransformerNet])
def test_skip_network_starts_as_the_identity_and_learns_a_change(cls):
    torch.manual_seed(0)
    net = cls(channels=(4, 8, 8), num_residual=1, skip=True)
    x = torch.rand(2, 3, 20, 28)
    eps = net.skip_epsilon
    assert torch.allclose(net(x), x.clamp(eps, 1 - eps), atol=1e-6)
    plain = cls(channels=(4, 8, 8), num_residual=1)
    assert (plain(x) - x).abs().mean() > 0.05  # without the skip the untrained output is not the photo
    # The zeroed last convolution still gets a gradient, so training moves away from the identity.
    net(x).sub(0.5).square().mean().backward()
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    y = net(torch.zeros(1, 3, 8, 8)), net(torch.ones(1, 3, 8, 8))
    assert all(t.min() >= 0 and t.max() <= 1 for t in y)


@pytest.mark.parametrize("cls, arch", [(TransformerNet, "johnson"), (FastTransformerNet, "fast")])
def test_skip_is_recorded_only_when_on_and_rebuilds(cls, arch):
    from fast_style.models import check_model_spec

    assert "skip" not in model_config(cls(channels=(4, 8, 8), num_residual=1))["kwargs"]
    net = cls(channels=(4, 8, 8), num_residual=1, skip=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    cfg = model_config(net)
    assert cfg["kwargs"]["skip"] is True
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    check_model_spec(arch, cfg["kwargs"], shapes)
    with pytest.raises(ValueError, match="skip must be true or false"):
        check_model_spec(arch, {**cfg["kwargs"], "skip": "yes"}, shapes)
    clone = build_model(arch, **cfg["kwargs"])
    clone.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 16, 24)
    assert torch.equal(clone(x), net(x))
