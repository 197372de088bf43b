"""Gram matrices, TV, the VGG layer maps, weight loading, and the perceptual loss."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from fast_style.errors import FastStyleError
from fast_style.losses import (
    PerceptualLoss,
    VGGFeatures,
    build_perceptual_loss,
    gram_matrix,
    layer_index_map,
    total_variation,
)
from fast_style.losses.vgg import _build_features

pytestmark = pytest.mark.filterwarnings("ignore:loss.weights=none")


def test_gram_matrix_hand_computed():
    # One image, C=2 channels, 1x2 pixels: f0 = [1, 2], f1 = [3, 4]; divide by C*H*W = 4.
    feats = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[[1 + 4, 3 + 8], [3 + 8, 9 + 16]]]) / 4.0
    assert torch.allclose(gram_matrix(feats), expected)


def test_gram_matrix_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    features = torch.rand(2, 8, 16, 16).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features)
    assert gram.dtype == torch.float32
    torch.testing.assert_close(gram, gram_matrix(features.float()))
    features.requires_grad_(True)
    gram_matrix(features).sum().backward()
    assert features.grad is not None and features.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_matrix_gradient_is_the_autograd_one(channels_last):
    # Its backward is written by hand: check it against finite differences and against autograd
    # through the plain product, with an upstream gradient that is not symmetric.
    feats = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    if channels_last:
        feats = feats.contiguous(memory_format=torch.channels_last)
    feats.requires_grad_(True)
    assert torch.autograd.gradcheck(gram_matrix, (feats,))
    upstream = torch.rand(2, 3, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad((gram_matrix(feats) * upstream).sum(), feats)
    flat = feats.reshape(2, 3, 20)
    plain = torch.bmm(flat, flat.transpose(1, 2)) / 60
    (expected,) = torch.autograd.grad((plain * upstream).sum(), feats)
    assert torch.allclose(grad, expected)
    assert grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_total_variation_hand_computed():
    img = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # vertical diffs: 2, 3 -> mean sq 6.5 ; horizontal diffs: 1, 2 -> mean sq 2.5
    assert total_variation(img).item() == pytest.approx(9.0)


CHANNELS = {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}


@pytest.mark.parametrize("network", ["vgg16", "vgg16_bn", "vgg19"])
def test_layer_map_points_at_relus_with_the_right_width(network):
    index = layer_index_map(network)
    features = _build_features(network)
    expected_convs = {"vgg16": 13, "vgg16_bn": 13, "vgg19": 16}[network]
    assert len(index) == expected_convs
    for name, i in index.items():
        assert isinstance(features[i], nn.ReLU), name
        conv = next(m for m in reversed(features[:i]) if isinstance(m, nn.Conv2d))
        assert conv.out_channels == CHANNELS[name[4]], name
    x = torch.rand(1, 3, 32, 32)
    vgg = VGGFeatures(["relu1_2", "relu3_3", "relu4_3"], network=network, weights="none")
    out = vgg(x)
    assert {k: v.shape[1] for k, v in out.items()} == {"relu1_2": 64, "relu3_3": 256, "relu4_3": 512}
    # Each activation is that of the named layer, run on the ImageNet-normalised image.
    h = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    for i, module in enumerate(vgg.features):
        h = module(h)
        for name in [n for n in out if index[n] == i]:
            torch.testing.assert_close(out[name], h, msg=name)


def test_vgg16_bn_indices_match_the_published_map():
    index = layer_index_map("vgg16_bn")
    assert (index["relu1_2"], index["relu2_2"], index["relu3_3"], index["relu4_3"]) == (5, 12, 22, 32)
    assert layer_index_map("vgg16")["relu4_3"] == 22


def test_extractor_stops_at_the_deepest_layer_and_is_frozen():
    vgg = VGGFeatures(["relu2_2"], network="vgg16", weights="none")
    assert len(vgg.features) == layer_index_map("vgg16")["relu2_2"] + 1
    assert not any(p.requires_grad for p in vgg.parameters())
    parent = nn.Sequential(vgg)
    parent.train()
    assert not vgg.training


def test_batch_norms_are_folded_into_the_convolutions_with_the_same_function(tmp_path):
    torch.manual_seed(0)
    plain = _build_features("vgg16_bn")[:13].eval()
    for module in plain:
        if isinstance(module, nn.BatchNorm2d):  # statistics far from the identity
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    path = tmp_path / "bn.pt"
    torch.save(plain.state_dict(), path)
    vgg = VGGFeatures(["relu1_2", "relu2_2"], network="vgg16_bn", weights=str(path))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in vgg.features)
    assert len(vgg.features) == len(plain)  # the norms became Identity: indices are unchanged
    assert not any(p.requires_grad for p in vgg.parameters())
    images = torch.rand(2, 3, 24, 20)
    out = vgg(images)
    x = (images - vgg.mean) / vgg.std
    with torch.no_grad():
        for index, module in enumerate(plain):
            x = module(x)
            if index in (5, 12):
                name = "relu1_2" if index == 5 else "relu2_2"
                assert torch.allclose(out[name], x, rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("min_pixels", [0, 10**9])
def test_large_images_run_channels_last_on_the_cpu_with_the_same_result(monkeypatch, min_pixels):
    torch.manual_seed(0)
    vgg = VGGFeatures(["relu1_2", "relu2_2"], network="vgg16", weights="none")
    images = torch.rand(1, 3, 16, 12, requires_grad=True)
    expected = vgg(images)
    (grad,) = torch.autograd.grad(gram_matrix(expected["relu2_2"]).sum() + expected["relu1_2"].mean(), images)
    monkeypatch.setattr("fast_style.losses.vgg.CHANNELS_LAST_MIN_PIXELS", min_pixels)
    out = vgg(images)
    layout = torch.channels_last if min_pixels == 0 else torch.contiguous_format
    assert all(f.is_contiguous(memory_format=layout) for f in out.values())
    assert all(torch.allclose(out[k], expected[k], atol=1e-6) for k in out)
    (grad_out,) = torch.autograd.grad(gram_matrix(out["relu2_2"]).sum() + out["relu1_2"].mean(), images)
    assert torch.allclose(grad_out, grad, rtol=1e-4, atol=1e-7)


def _features_file(tmp_path, network="vgg16", upto=10, shape_fix=None):
    features = _build_features(network)[:upto]
    state = features.state_dict()
    if shape_fix:
        state[shape_fix] = torch.zeros(3, 3)
    path = tmp_path / "features.pt"
    torch.save(state, path)
    return path, state


def test_weights_from_path_load_strictly(tmp_path):
    path, state = _features_file(tmp_path, upto=10)
    vgg = VGGFeatures(["relu2_2"], network="vgg16", weights=str(path))
    assert torch.equal(vgg.features[0].weight, state["0.weight"])
    assert torch.equal(vgg.features[7].bias, state["7.bias"])


def test_weights_with_a_wrong_shape_are_rejected(tmp_path):
    path, _ = _features_file(tmp_path, upto=10, shape_fix="2.weight")
    with pytest.raises(FastStyleError, match=r"2\.weight has shape \(3, 3\), expected \(64, 64, 3, 3\)"):
        VGGFeatures(["relu2_2"], network="vgg16", weights=str(path))


def test_weights_of_another_network_are_rejected(tmp_path):
    path, _ = _features_file(tmp_path, network="vgg16_bn", upto=10)
    with pytest.raises(FastStyleError, match=r"does not fit vgg16\.features"):
        VGGFeatures(["relu2_2"], network="vgg16", weights=str(path))


def test_weights_too_shallow_for_the_layers_are_rejected(tmp_path):
    path, _ = _features_file(tmp_path, upto=5)
    with pytest.raises(FastStyleError, match="missing keys"):
        VGGFeatures(["relu3_3"], network="vgg16", weights=str(path))


def test_weights_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(FastStyleError, match="is not a PyTorch file"):
        VGGFeatures(["relu2_2"], network="vgg16", weights=str(path))


def test_missing_imagenet_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(FastStyleError) as info:
        VGGFeatures(["relu2_2"], network="vgg16", weights="imagenet")
    message = str(info.value)
    assert str(tmp_path / "empty_torch_home" / "hub" / "checkpoints" / "vgg16-397923af.pth") in message
    assert "loss.weights=<path" in message


def test_random_weights_warn_loudly():
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        VGGFeatures(["relu1_2"], network="vgg16", weights="none")


def test_unknown_layer_and_network_are_clear_errors():
    with pytest.raises(FastStyleError, match="unknown vgg16 layer"):
        VGGFeatures(["relu9_9"], network="vgg16", weights="none")
    with pytest.raises(FastStyleError, match="unknown loss network 'resnet'"):
        VGGFeatures(["relu1_1"], network="resnet", weights="none")


@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    torch.manual_seed(0)
    loss = build_perceptual_loss("vgg16", "none", content_weight=1.0, style_weight=1e5, tv_weight=1.0)
    loss.set_style_image(torch.rand(1, 3, 40, 40))
    return loss


def test_perceptual_loss_zero_for_identical_images(loss):
    style = torch.rand(1, 3, 32, 32)
    loss.set_style_image(style)
    terms = loss(style, content=style)
    assert terms["content"].item() == 0
    assert terms["style"].item() == pytest.approx(0, abs=1e-12)


def test_perceptual_loss_positive_for_different_images(loss):
    loss.set_style_image(torch.rand(1, 3, 40, 40))
    x, c = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    terms = loss(x, content=c)
    assert set(terms) == {"content", "style", "tv", "total"}
    assert all(terms[k].item() > 0 for k in terms)
    assert terms["total"].item() == pytest.approx(sum(terms[k].item() for k in ("content", "style", "tv")))


def test_style_targets_are_batch_one_and_broadcast(loss):
    loss.set_style_image(torch.rand(1, 3, 40, 40))
    assert loss.style_gram_relu3_3.shape == (1, 256, 256)
    one = loss(torch.ones(1, 3, 32, 32) * 0.3, content=torch.rand(1, 3, 32, 32))["style"]
    four = loss(torch.ones(4, 3, 32, 32) * 0.3, content=torch.rand(4, 3, 32, 32))["style"]
    assert one.item() == pytest.approx(four.item(), rel=1e-5)


def test_blended_style_targets_are_weighted_grams(loss):
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    loss.set_style_image(a)
    ga = loss.style_gram_relu1_2.clone()
    loss.set_style_image(b)
    gb = loss.style_gram_relu1_2.clone()
    loss.set_style_image([a, b], blend=[3, 1])
    assert torch.allclose(loss.style_gram_relu1_2, 0.75 * ga + 0.25 * gb, atol=1e-7)


def test_per_layer_style_weights_scale_their_layer():
    torch.manual_seed(0)
    encoder = VGGFeatures(["relu1_2", "relu2_2"], network="vgg16", weights="none")
    x, s = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    only1 = PerceptualLoss(encoder, [], ["relu1_2", "relu2_2"], [1.0, 0.0])
    only2 = PerceptualLoss(encoder, [], ["relu1_2", "relu2_2"], [0.0, 1.0])
    both = PerceptualLoss(encoder, [], ["relu1_2", "relu2_2"], {"relu1_2": 2.0, "relu2_2": 1.0})
    for loss in (only1, only2, both):
        loss.set_style_image(s)
    s1, s2, sb = (loss(x)["style"].item() for loss in (only1, only2, both))
    assert sb == pytest.approx(2 * s1 + s2, rel=1e-5)


def test_gradients_reach_the_image_not_the_vgg(loss):
    loss.set_style_image(torch.rand(1, 3, 32, 32))
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss(x, content=torch.rand(1, 3, 32, 32))["total"].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.encoder.parameters())


def test_loss_module_has_nothing_to_save_but_the_vgg(loss):
    # The style targets are recomputed from the style image; only encoder weights are state.
    assert loss.state_dict() and all(k.startswith("encoder.") for k in loss.state_dict())


def test_cli_reports_missing_imagenet_weights_without_traceback(tmp_path, image_folder, style_path):
    env = {"TORCH_HOME": str(tmp_path / "empty"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fast_style.cli.main",
            "train",
            f"style_image={style_path}",
            f"data.root={image_folder}",
            "loss.weights=imagenet",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fast-style train: error: ImageNet weights for vgg16")
    assert "vgg16-397923af.pth" in last and "loss.weights=<path" in last


# -- balanced ("auto") layer weights --------------------------------------------------------------------
class _ScaledEncoder(nn.Module):
    """Wraps an encoder and multiplies each layer's activations by its own constant."""

    def __init__(self, encoder: nn.Module, scales: dict[str, float]) -> None:
        super().__init__()
        self.encoder, self.scales = encoder, scales

    def forward(self, images, layers=None):
        return {k: v * self.scales[k] for k, v in self.encoder(images, layers).items()}


def test_auto_layer_weights_do_not_depend_on_activation_scales():
    torch.manual_seed(0)
    encoder = VGGFeatures(["relu1_2", "relu2_2"], network="vgg16", weights="none")
    x, c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(1, 3, 40, 40)
    layers = (["relu2_2"], ["relu1_2", "relu2_2"])
    plain = PerceptualLoss(encoder, *layers)
    scaled = PerceptualLoss(_ScaledEncoder(encoder, {"relu1_2": 1e3, "relu2_2": 1e-2}), *layers)
    raw = PerceptualLoss(
        _ScaledEncoder(encoder, {"relu1_2": 1e3, "relu2_2": 1e-2}), *layers, None, content_layer_weights=None
    )
    for loss in (plain, scaled, raw):
        loss.set_style_image(s)
    a, b, r = plain.raw_terms(x, c), scaled.raw_terms(x, c), raw.raw_terms(x, c)
    assert b["style"].item() == pytest.approx(a["style"].item(), rel=1e-4)
    assert b["content"].item() == pytest.approx(a["content"].item(), rel=1e-4)
    assert r["style"].item() > 1e3 * a["style"].item()  # raw errors follow the scales


def test_auto_style_weights_are_the_inverse_gram_energy_per_layer():
    torch.manual_seed(0)
    encoder = VGGFeatures(["relu1_2", "relu2_2"], network="vgg16", weights="none")
    loss = PerceptualLoss(encoder, [], ["relu1_2", "relu2_2"])
    s, x = torch.rand(1, 3, 40, 40), torch.rand(1, 3, 32, 32)
    loss.set_style_image(s)
    for name in loss.style_layers:
        gram = getattr(loss, f"style_gram_{name}")
        assert loss.style_layer_weights[name] == pytest.approx(1 / (2 * gram.pow(2).mean().item()), rel=1e-5)
    feats = encoder(x)
    expected = sum(
        ((gram_matrix(feats[n]) - getattr(loss, f"style_gram_{n}")) ** 2).mean()
        / (2 * getattr(loss, f"style_gram_{n}").pow(2).mean())
        for n in loss.style_layers
    )
    assert loss.raw_terms(x)["style"].item() == pytest.approx(expected.item(), rel=1e-5)
    # A photo against a painting-like target is an error of order one at every layer, not 1e-13.
    assert 1e-3 < loss.raw_terms(torch.zeros(1, 3, 32, 32) + 0.5)["style"].item() < 10


def test_auto_content_weight_is_the_relative_feature_error():
    torch.manual_seed(0)
    encoder = VGGFeatures(["relu2_2"], network="vgg16", weights="none")
    loss = PerceptualLoss(encoder, ["relu2_2"], [])
    x, c = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    fx, fc = encoder(x)["relu2_2"], encoder(c)["relu2_2"]
    expected = ((fx - fc) ** 2).mean() / (fc**2).mean()
    assert loss.raw_terms(x, c)["content"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_layer_weights_reject_words_other_than_auto():
    encoder = VGGFeatures(["relu1_2"], network="vgg16", weights="none")
    with pytest.raises(FastStyleError, match="'auto', null or one number per layer"):
        PerceptualLoss(encoder, [], ["relu1_2"], "balanced")


def test_settings_record_everything_that_defines_the_loss(tmp_path):
    path, _ = _features_file(tmp_path, upto=10)
    loss = build_perceptual_loss("vgg16", path, ["relu2_2"], ["relu1_2", "relu2_2"], style_weight=7.0)
    loss.set_style_image(torch.rand(1, 3, 32, 32))
    info = loss.settings()
    assert info["network"] == "vgg16" and info["weights"] == "file" and info["weights_file"] == path.name
    import hashlib

    assert info["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["style_layer_weights"] == "auto" and info["content_layer_weights"] == "auto"
    assert info["resolved_style_layer_weights"] == [loss.style_layer_weights[n] for n in loss.style_layers]
    assert info["style_weight"] == 7.0 and info["style_layers"] == ["relu1_2", "relu2_2"]
    assert str(tmp_path) not in repr(info)  # names and hashes only, never a path of this machine


def test_noise_stability_measures_how_much_a_network_amplifies_noise():
    from fast_style.losses.stability import noise_stability

    torch.manual_seed(0)
    images = 0.2 + 0.6 * torch.rand(2, 3, 64, 64)  # away from 0 and 1, where the noisy copy is clamped
    identity = noise_stability(lambda x: x, images, images, 0.02)
    double = noise_stability(lambda x: 2 * x - 0.5, images, 2 * images - 0.5, 0.02)
    flat = noise_stability(
        lambda x: x.mean(dim=(2, 3), keepdim=True).expand_as(x), images, images.mean((2, 3), True), 0.02
    )
    assert identity.item() == pytest.approx(1.0, rel=0.05)
    assert double.item() == pytest.approx(4.0, rel=0.05)
    assert flat.item() < 0.01
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    out = net(images)
    noise_stability(net, images, out, 0.02).backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


def test_shift_stability_is_zero_for_a_network_that_moves_with_its_input():
    from fast_style.losses.stability import noise_stability

    torch.manual_seed(0)
    images = 0.2 + 0.6 * torch.rand(2, 3, 64, 64)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")  # shift-equivariant inside
    smooth = noise_stability(conv, images, conv(images), 1e-4, shift=3)
    assert smooth.item() < 1.5  # only the noise itself, amplified by the conv

    def grid(x: torch.Tensor) -> torch.Tensor:  # a pattern fixed to the frame: does not move with x
        ys = torch.arange(x.shape[-2]).view(-1, 1) % 4 == 0
        return x + 0.2 * ys.to(x.dtype)

    # Most draws move the crop by rows that are not a multiple of 4: the grid then lands elsewhere.
    moved = [noise_stability(grid, images, grid(images), 1e-2, shift=3).item() for _ in range(8)]
    assert max(moved) > 100
    assert noise_stability(grid, images, grid(images), 1e-2).item() == pytest.approx(1.0, rel=0.05)
