import json
import subprocess
import sys

import pytest

import castmodels
from castmodels import PRESETS, ArchSpec, LayerSpec, feature_size
from castmodels.presets import PRESET_CODES


def test_code_round_trip_for_every_preset():
    for name, spec in PRESETS.items():
        again = ArchSpec.from_code(spec.code(), name=name)
        assert again == spec


def test_code_parses_paper_tokens():
    spec = ArchSpec.from_code("C16 X.06 P D32s2 C64d2eb X.5 Q F")
    assert spec.head == "flatten"
    first, dw, last = spec.layers
    assert (first.conv, first.out_channels, first.dropout, first.pool) == ("conv3x3", 16, 0.06, "max")
    assert (dw.conv, dw.stride) == ("dwsep", 2)
    assert (last.dilation, last.squeeze_excite, last.blurpool, last.dropout, last.pool) == (2, True, True, 0.5, "avg")


def test_json_round_trip():
    spec = ArchSpec.from_code("C8 D16s2e X.1 P C32b A", name="x")
    text = spec.to_json()
    assert json.loads(text)["layers"][1]["squeeze_excite"] is True
    assert ArchSpec.from_json(text) == spec
    assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_summary_is_one_line_with_name_and_codes():
    s = PRESETS["custom-140k-dw"].summary()
    assert "\n" not in s
    assert s.startswith("custom-140k-dw:")
    assert PRESET_CODES["custom-140k-dw"].replace("A3", "A").split()[-3:] == s.split()[-3:]


def test_spec_is_frozen_and_hashable():
    spec = PRESETS["custom-340k-3x3"]
    with pytest.raises(AttributeError):
        spec.head = "flatten"
    assert hash(spec) == hash(ArchSpec.from_dict(spec.to_dict()))


@pytest.mark.parametrize(
    "code, message",
    [
        ("", "empty"),
        ("P C16 A", "must start with a conv"),
        ("C16 Z3 A", "unknown token 'Z3'"),
        ("C16 A C32", "must be the last token"),
        ("C16s3 A", "stride must be 1 or 2"),
    ],
)
def test_bad_codes_raise_clear_errors(code, message):
    with pytest.raises(ValueError, match=message):
        ArchSpec.from_code(code)


def test_bad_values_name_the_field():
    with pytest.raises(ValueError, match="conv must be one of"):
        LayerSpec(conv="conv5x5", out_channels=8)
    with pytest.raises(ValueError, match="out_channels must be"):
        LayerSpec(conv="conv3x3", out_channels=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        LayerSpec(conv="conv3x3", out_channels=8, dropout=1.5)
    with pytest.raises(ValueError, match="head must be one of"):
        ArchSpec(layers=(LayerSpec("conv3x3", 8),), head="mlp")
    with pytest.raises(ValueError, match="unknown keys"):
        ArchSpec.from_dict({"layers": [{"conv": "conv3x3", "out_channels": 8, "kernel": 5}]})


def test_feature_size_halves_per_stride_and_pool():
    spec = ArchSpec.from_code("C16 P C32s2 C64 X.1 P A")
    assert feature_size(spec, 32) == 4
    assert feature_size(spec, 33) == 4  # (33 -> 16 pooled -> 8 strided -> 4 pooled)
    assert feature_size(spec, 3) == 0  # vanished


def test_every_exported_name_resolves():
    for name in castmodels.__all__:
        assert getattr(castmodels, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        castmodels.nothing  # noqa: B018


def test_specs_and_presets_do_not_import_torch():
    check = ("import sys; from castmodels import PRESETS, ArchSpec, feature_size; "
             "feature_size(PRESETS['custom-140k-dw'], 32); "
             "assert 'torch' not in sys.modules, [m for m in sys.modules if m.startswith('torch')]")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
