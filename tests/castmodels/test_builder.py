import pytest
import torch
from torch import nn

from castmodels import PRESETS, ArchSpec, build_model, get_preset, preset_names
from castmodels.layers import BlurPool2d, SqueezeExcite

PAPER_PARAMS = {
    "custom-140k-3x3": 143_218,
    "custom-140k-dw": 143_406,
    "custom-340k-3x3": 340_010,
    "custom-340k-dw": 344_508,
    "custom-590k-3x3": 590_378,
    "custom-590k-dw": 599_913,
}


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_preset_parameter_counts_match_the_paper(name):
    model = build_model(get_preset(name), in_channels=3, num_classes=10)
    assert trainable(model) == PAPER_PARAMS[name]


def test_six_presets_in_paper_order():
    assert preset_names() == list(PAPER_PARAMS)


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_presets_run_on_grey_and_rgb(name):
    for channels in (1, 3):
        model = build_model(PRESETS[name], channels, 6).eval()
        out = model(torch.rand(2, channels, 32, 32))
        assert out.shape == (2, 6)


def test_block_order_is_conv_relu_bn_as_in_the_paper():
    block = build_model(ArchSpec.from_code("C8 X.1 P A"), 3, 2)[0][0]
    assert [type(m) for m in block] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.MaxPool2d]


def test_depthwise_separable_is_depthwise_then_pointwise():
    conv = build_model(ArchSpec.from_code("C8 D16d2 A"), 3, 2)[0][1].conv
    assert conv.depthwise.groups == 8 and conv.depthwise.dilation == (2, 2)
    assert conv.pointwise.kernel_size == (1, 1) and conv.pointwise.out_channels == 16


def test_flatten_head_depends_on_image_size():
    spec = ArchSpec.from_code("C8 P C8s2 F")
    m32 = build_model(spec, 1, 3, image_size=32)
    m64 = build_model(spec, 1, 3, image_size=64)
    assert m32[1][1].in_features == 8 * 8 * 8
    assert m64[1][1].in_features == 8 * 16 * 16
    assert m64(torch.rand(1, 1, 64, 64)).shape == (1, 3)


def test_se_and_blurpool_flags_add_their_layers():
    model = build_model(ArchSpec.from_code("C8e P C16s2b D16b P A"), 3, 2).eval()
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(SqueezeExcite) == 1
    assert kinds.count(BlurPool2d) == 2  # before the strided conv, and after the max-pool
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2)
    # stride-2 conv and pool still halve the map: 32 -> 16 -> 8 -> 4
    feats = model[0](torch.rand(1, 3, 32, 32))
    assert feats.shape[-1] == 4


def test_blurpool_is_a_normalised_low_pass():
    blur = BlurPool2d(2, stride=1)
    x = torch.ones(1, 2, 5, 5)
    assert torch.allclose(blur(x), x)


def test_too_small_image_is_a_clear_error():
    with pytest.raises(ValueError, match="image_size 4 is too small"):
        build_model(PRESETS["custom-590k-dw"], 3, 10, image_size=4)


def test_unknown_preset_lists_known_names():
    with pytest.raises(ValueError, match="custom-140k-3x3"):
        get_preset("resnet-9000")


def test_build_is_pure():
    spec = PRESETS["custom-140k-dw"]
    torch.manual_seed(0)
    a = build_model(spec, 3, 10)
    torch.manual_seed(0)
    b = build_model(spec, 3, 10)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=False))
    assert spec == PRESETS["custom-140k-dw"]
