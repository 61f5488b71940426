import pytest
import torch
from torchvision.models import Inception_V3_Weights, MobileNet_V2_Weights
from torchvision.models.inception import InceptionAux

from castmodels import BASELINES, BaselineNet, build_baseline, get_baseline
from castmodels.baselines import IMAGENET_MEAN, IMAGENET_STD, cifar_resnet_v2
from search.latency.measure import count_params


def _size(name: str) -> int:
    return max(32, get_baseline(name).min_image_size)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_builds_for_grey_and_rgb(name, channels):
    size = _size(name)
    model = build_baseline(name, channels, 5, size).eval()
    assert isinstance(model, BaselineNet)
    with torch.inference_mode():
        out = model(torch.rand(2, channels, size, size))
    assert out.shape == (2, 5)


def test_torchvision_baselines_have_torchvision_parameter_counts():
    assert count_params(build_baseline("mobilenet_v2", 3, 1000)) == MobileNet_V2_Weights.DEFAULT.meta["num_params"]
    # torchvision's count includes InceptionV3's auxiliary classifier, which the baseline leaves out
    aux = count_params(InceptionAux(768, 1000))
    inception = build_baseline("inception_v3", 3, 1000, image_size=75)
    assert count_params(inception) == Inception_V3_Weights.DEFAULT.meta["num_params"] - aux


def test_cifar_resnets_have_the_papers_size():
    assert 0.26e6 < count_params(build_baseline("resnet20", 3, 10)) < 0.28e6
    assert count_params(build_baseline("resnet47", 3, 10)) < count_params(build_baseline("resnet65", 3, 10))
    with pytest.raises(ValueError, match="9n\\+2, got 48"):
        cifar_resnet_v2(48, 3, 10)


def test_vit_is_the_papers_11m_parameter_net():
    assert 10.5e6 < count_params(build_baseline("vit", 3, 10, image_size=32)) < 11.5e6


def test_unknown_baseline_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown baseline 'resnet18'.*resnet20.*mobilenet_v2.*vit"):
        build_baseline("resnet18", 3, 10)


def test_too_small_an_image_is_refused_naming_the_minimum():
    with pytest.raises(ValueError, match="inception_v3 needs image_size >= 75, got 32"):
        build_baseline("inception_v3", 3, 10, image_size=32)


def test_pretrained_input_is_grey_repeated_and_imagenet_normalised():
    model = build_baseline("resnet20", 1, 4, 16, pretrained=True).eval()
    assert model.net[0][0].in_channels == 3
    x = torch.rand(2, 1, 16, 16)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        assert torch.allclose(model(x), model.net((x.repeat(1, 3, 1, 1) - mean) / std))
    scratch = build_baseline("resnet20", 1, 4, 16).eval()
    assert scratch.net[0][0].in_channels == 1
    with torch.inference_mode():
        assert torch.equal(scratch(x), scratch.net(x))


def test_load_backbone_skips_a_classifier_of_another_class_count():
    source = build_baseline("mobilenet_v2", 3, 10, pretrained=True)
    target = build_baseline("mobilenet_v2", 1, 4, pretrained=True)
    report = target.load_backbone(source.net.state_dict())
    assert report.skipped == ["classifier.1.weight", "classifier.1.bias"]
    assert report.unexpected == []
    assert torch.equal(target.net.features[0][0].weight, source.net.features[0][0].weight)
    assert not torch.equal(target.net.features[0][0].weight, build_baseline("mobilenet_v2", 1, 4).net.features[0][0].weight)


def test_load_backbone_refuses_another_network():
    target = build_baseline("resnet20", 3, 4)
    with pytest.raises(ValueError, match="not a resnet20 state dict: it lacks"):
        target.load_backbone({"0.0.weight": target.net[0][0].weight.detach().clone()})
    grey = build_baseline("resnet20", 1, 4).net.state_dict()
    with pytest.raises(ValueError, match="differ in shape, e.g. 0.0.weight"):
        target.load_backbone(grey)
