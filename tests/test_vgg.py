"""VGG19 feature extractor: torchvision layout, weight conversion, loading errors.

Parity with torchvision's VGG19 (through BasicSR's extractor) is in tests/test_parity_golden.py.
"""

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from jpeg_jax.models import vgg

_REPO = pathlib.Path(__file__).resolve().parents[1]

# torchvision's vgg19 ('E') features: convs (3x3, pad 1) + ReLU, 'M' = MaxPool2d(2, 2).
_CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"]  # fmt: skip


def _random_state_dict(rng):
    """A torchvision-keyed VGG19 state_dict of NumPy arrays (He-scaled random weights)."""
    state, index, cin = {}, 0, 3
    for v in _CFG_E:
        if v == "M":
            index += 1
            continue
        std = np.sqrt(2.0 / (9 * cin))
        state[f"features.{index}.weight"] = rng.normal(0, std, (v, cin, 3, 3)).astype(np.float32)
        state[f"features.{index}.bias"] = rng.normal(0, 0.1, (v,)).astype(np.float32)
        index, cin = index + 2, v
    state["classifier.0.weight"] = np.zeros((4, 4), np.float32)  # ignored by the converter
    return state


@pytest.fixture(scope="module")
def state_dict():
    return _random_state_dict(np.random.default_rng(0))


def test_layer_table_matches_torchvision_indices():
    assert len(vgg.LAYER_NAMES) == 16
    assert vgg.TORCHVISION_INDEX["conv1_1"] == 0
    assert vgg.TORCHVISION_INDEX["conv2_2"] == 7
    assert vgg.TORCHVISION_INDEX["conv3_4"] == 16
    assert vgg.TORCHVISION_INDEX["conv4_4"] == 25
    assert vgg.TORCHVISION_INDEX["conv5_4"] == 34


def test_param_count_is_vgg19_features():
    params = jax.eval_shape(vgg.VGG19Features().init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))[
        "params"
    ]
    count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    assert count == 20_024_384  # torchvision vgg19().features


def test_first_conv_matches_scipy_correlation(state_dict):
    """OIHW -> HWIO mapping and padding against scipy (no normalisation)."""
    params = vgg.convert_torchvision_vgg19(state_dict)
    images = np.random.default_rng(1).uniform(size=(1, 9, 11, 3)).astype(np.float32)
    model = vgg.VGG19Features(last_layer="conv1_1", use_input_norm=False)
    out = np.asarray(model.apply({"params": params}, images)["conv1_1"])
    w, b = state_dict["features.0.weight"], state_dict["features.0.bias"]
    for o in (0, 5, 63):
        ref = sum(signal.correlate2d(images[0, :, :, i], w[o, i], mode="same") for i in range(3))
        np.testing.assert_allclose(out[0, :, :, o], ref + b[o], rtol=1e-5, atol=1e-5)


def test_cli_converts_a_pth(state_dict, tmp_path):
    """Reading a real .pth needs torch (not installed in CI). Parity of the features with
    torchvision's VGG19 is in tests/test_parity_golden.py (golden outputs, no torch needed)."""
    torch = pytest.importorskip("torch", reason="writing a .pth needs torch")
    path = tmp_path / "vgg19.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, path)
    params = vgg.load_vgg19(_convert_cli(path, tmp_path / "vgg19.npz"))
    expected = vgg.convert_torchvision_vgg19(state_dict)
    for name in vgg.LAYER_NAMES:
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(params[name][leaf], expected[name][leaf])


def _convert_cli(pth, npz):
    cmd = [sys.executable, "-m", "jpeg_jax.models.vgg", str(pth), str(npz)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=_REPO)
    return npz


def test_cli_reports_a_missing_file(tmp_path):
    cmd = [sys.executable, "-m", "jpeg_jax.models.vgg", str(tmp_path / "no.pth"), "out.npz"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=_REPO)
    assert result.returncode == 1
    assert "not found" in result.stderr and "Traceback" not in result.stderr


def test_last_layer_stops_early(state_dict):
    params = vgg.convert_torchvision_vgg19(state_dict)
    images = jnp.zeros((1, 16, 16, 3))
    feats = vgg.VGG19Features(last_layer="conv2_2").apply({"params": params}, images)
    assert list(feats) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    assert feats["conv2_2"].shape == (1, 8, 8, 128)
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        vgg.VGG19Features(last_layer="relu5_4").apply({"params": params}, images)


def test_save_load_roundtrip(state_dict, tmp_path):
    params = vgg.convert_torchvision_vgg19(state_dict)
    path = tmp_path / "vgg.npz"
    vgg.save_vgg19(params, path)
    loaded = vgg.load_vgg19(path)
    np.testing.assert_array_equal(
        loaded["conv3_4"]["kernel"], state_dict["features.16.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(loaded["conv5_4"]["bias"], state_dict["features.34.bias"])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m jpeg_jax.models.vgg"):
        vgg.load_vgg19(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="not found"):
        vgg.convert_torchvision_vgg19(tmp_path / "nope.pth")


def test_bad_files_are_clear_errors(state_dict, tmp_path):
    params = vgg.convert_torchvision_vgg19(state_dict)
    flat = {f"{n}/{leaf}": v for n, d in params.items() for leaf, v in d.items()}
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in flat.items() if k != "conv4_2/bias"})
    with pytest.raises(ValueError, match="conv4_2/bias"):
        vgg.load_vgg19(missing)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{**flat, "conv1_1/kernel": np.zeros((3, 3, 3, 32), np.float32)})
    with pytest.raises(ValueError, match="conv1_1/kernel"):
        vgg.load_vgg19(wrong)
    with pytest.raises(ValueError, match="features.7.weight"):
        vgg.convert_torchvision_vgg19(
            {k: v for k, v in state_dict.items() if k != "features.7.weight"}
        )
    bad = {**state_dict, "features.0.weight": np.zeros((64, 3, 5, 5), np.float32)}
    with pytest.raises(ValueError, match="features.0.weight"):
        vgg.convert_torchvision_vgg19(bad)
