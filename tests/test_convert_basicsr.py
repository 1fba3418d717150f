"""params_from_basicsr on the real key names of BasicSR's RRDBNet: what it takes, what it refuses.

The key names and shapes are those of BasicSR's own ``RRDBNet(num_in_ch=3, scale=2, ...)``, stored
by ``tests/golden/make_golden.py`` in ``tests/golden/rrdbnet.npz`` (no torch needed here).
"""

import json

import jax
import numpy as np
import parity_helpers as ph
import pytest

from jpeg_jax.models import Generator, convert
from jpeg_jax.models.generator import abstract_params


@pytest.fixture(scope="module")
def golden():
    return ph.load_golden("rrdbnet")


@pytest.fixture()
def state_dict(golden):
    """BasicSR's small RRDBNet (32 / 3 blocks / 16) under its real names, seeded weights."""
    return ph.state_dict(ph.decode_spec(golden["spec"]), int(golden["seed"]))


def test_real_names_map_one_to_one(state_dict):
    params = convert.params_from_basicsr(state_dict)
    kernel = state_dict["body.1.rdb3.conv2.weight"]  # OIHW (16, 32 + 16, 3, 3)
    np.testing.assert_array_equal(
        params["body_1"]["rdb3"]["conv2"]["kernel"], kernel.transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(params["conv_hr"]["bias"], state_dict["conv_hr.bias"])
    assert "conv_up2" not in params  # BasicSR's second upsampling has no counterpart
    assert sorted(params) == sorted(
        ["conv_first", "conv_body", "conv_up1", "conv_hr", "conv_last"]
        + [f"body_{i}" for i in range(3)]
    )


def test_conv_up2_is_optional(state_dict):
    without = {k: v for k, v in state_dict.items() if not k.startswith("conv_up2.")}
    a, b = convert.params_from_basicsr(state_dict), convert.params_from_basicsr(without)
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize(
    "extra",
    [
        "body.0.rdb1.conv6.weight",  # RDBs have five convs
        "body.1.rdb4.conv1.bias",  # RRDBs have three RDBs
        "conv_up3.weight",  # no third upsampling
        "body.0.rdb1.conv1.weight_orig",  # spectral-norm leftovers
        "module.conv_first.weight",  # DataParallel prefix
    ],
)
def test_unknown_keys_are_errors_that_name_them(state_dict, extra):
    state_dict[extra] = np.zeros((1,), np.float32)
    with pytest.raises(ValueError, match=f"unknown keys {extra}"):
        convert.params_from_basicsr(state_dict)


def test_a_whole_checkpoint_gets_a_hint(state_dict):
    with pytest.raises(ValueError, match=r"unknown keys params_ema.*checkpoint\['params_ema'\]"):
        convert.params_from_basicsr({"params_ema": state_dict})
    prefixed = {f"module.{k}": v for k, v in state_dict.items()}
    with pytest.raises(ValueError, match="'module.' prefix"):
        convert.params_from_basicsr(prefixed)


@pytest.mark.parametrize(
    "dropped", ["conv_first.weight", "conv_hr.bias", "conv_up1.weight", "body.1.rdb2.conv4.bias"]
)
def test_missing_keys_are_errors_that_name_them(state_dict, dropped):
    del state_dict[dropped]
    with pytest.raises(ValueError, match=f"missing {dropped}"):
        convert.params_from_basicsr(state_dict)


def test_a_missing_middle_block_is_an_error(state_dict):
    for key in [k for k in state_dict if k.startswith("body.1.")]:
        del state_dict[key]
    with pytest.raises(ValueError, match=r"missing body\.1\.rdb1\.conv1\.weight.*\(30 in all\)"):
        convert.params_from_basicsr(state_dict)
    only_head = {k: v for k, v in state_dict.items() if not k.startswith("body.")}
    with pytest.raises(ValueError, match=r"missing body\.0\.\*"):
        convert.params_from_basicsr(only_head)


@pytest.mark.parametrize("cin,scale", [(3, 4), (48, 1)])
def test_other_scales_are_refused(state_dict, cin, scale):
    # RRDBNet(scale=4) takes the image as is (3 channels), scale=1 unshuffles by 4 (48).
    state_dict["conv_first.weight"] = np.zeros((32, cin, 3, 3), np.float32)
    with pytest.raises(ValueError, match=f"conv_first.weight takes {cin} input channels"):
        convert.params_from_basicsr(state_dict)


def test_template_with_more_blocks_than_the_state_dict_is_an_error(state_dict, golden):
    sizes = json.loads(str(golden["sizes"]))
    bigger = Generator(**{**sizes, "num_block": 4}, noise=False)
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_params(bigger))
    with pytest.raises(ValueError, match="template parameters not in the state dict: body_3/"):
        convert.params_from_basicsr(state_dict, template=template)
