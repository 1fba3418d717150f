"""Make the golden parity files in this folder with the real PyTorch reference implementations.

Not run in CI (the tests that read the files need neither torch nor this script). Regenerate
only when a reference or a seed changes, then commit the ``.npz`` files.

Environment used for the committed files (a separate virtualenv outside the repository; jax is
not needed)::

    python3 -m venv /tmp/refvenv && . /tmp/refvenv/bin/activate
    pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid==0.3.0 basicsr==1.4.2 numpy==2.4.6
    python tests/golden/make_golden.py          # from the repository root; ~1 min on 2 cores

Versions: torch 2.14.1 (CPU execution), torchvision 0.29.1, pytorch-fid 0.3.0, basicsr 1.4.2,
numpy 2.4.6, Python 3.11. BasicSR 1.4.2 imports ``torchvision.transforms.functional_tensor``,
which torchvision removed in 0.17; the script aliases it to ``torchvision.transforms.functional``
(the usual fix; nothing this script uses touches it) and then imports BasicSR normally.

What each file holds (weights and inputs are NOT stored: they are drawn from seeds by
``tests/parity_helpers.py``; the file stores the SHA-256 of what was drawn, the state-dict key
names and shapes the real module has, and the reference outputs):

- ``rrdbnet.npz``: BasicSR's ``RRDBNet(num_in_ch=3, num_out_ch=3, scale=2, num_feat=32,
  num_block=3, num_grow_ch=16)`` loaded (strict) with seeded weights, run on seeded images.
  Our generator is that network with ONE x2 upsampling (pixel-unshuffle x2 in, same size out):
  the reference is BasicSR's own forward with the second upsampling step (``interpolate``,
  ``conv_up2``, LeakyReLU) left out; the script checks that adding that step back gives
  ``net(x)`` bit for bit, so the reference is BasicSR's computation in BasicSR's order. Also the
  key names and shapes of the paper-size ``RRDBNet(3, 3, scale=2)`` (num_feat 64, 23 blocks,
  growth 32; the Real-ESRGAN x2 architecture).
- ``fid_inception.npz``: pytorch-fid's ``InceptionV3([3], resize_input, normalize_input=True)``
  (its ``fid_inception_v3`` over torchvision's Inception3 classes; the download replaced by the
  seeded state dict, loaded strictly), pool3 features with and without the resize to 299, and
  the resize alone (``F.interpolate``, bilinear, ``align_corners=False``) at other sizes.
- ``vgg19.npz``: torchvision's ``vgg19()`` with seeded ``features.*`` weights (classifier left
  at its init: no converter reads it), every conv layer's pre-activation output through
  BasicSR's ``VGGFeatureExtractor`` (checked equal to torchvision's ``features`` slices), stored
  at 2048 fixed positions per layer plus each channel's spatial mean; and BasicSR's
  ``PerceptualLoss`` with Real-ESRGAN's layer weights on seeded image pairs.

Every reference is computed twice, in float32 and in float64 (``.double()``). The file stores the
float64 result (as float32) and ``<name>_err32``, how far torch's own float32 run is from it;
the tests allow our float32 run a small multiple of that (see ``tests/test_parity_golden.py``).
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional

sys.modules.setdefault(
    "torchvision.transforms.functional_tensor", torchvision.transforms.functional
)

import basicsr  # noqa: E402
import pytorch_fid  # noqa: E402
import pytorch_fid.inception  # noqa: E402
from basicsr.archs import vgg_arch  # noqa: E402
from basicsr.archs.rrdbnet_arch import RRDBNet  # noqa: E402
from basicsr.losses.basic_loss import PerceptualLoss  # noqa: E402

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
import parity_helpers as ph  # noqa: E402

VGG_SAMPLES = 2048  # stored positions per VGG layer
RESIZE_CASES = [(80, 299), (333, 299), (299, 299), (7, 5)]  # (input, output) sizes
# Real-ESRGAN's perceptual loss (options/train_realesrgan_x4plus.yml, BasicSR's PerceptualLoss).
REAL_ESRGAN_LAYER_WEIGHTS = {
    "conv1_2": 0.1,
    "conv2_2": 0.1,
    "conv3_4": 1,
    "conv4_4": 1,
    "conv5_4": 1,
}
# BasicSR's VGG19 names of the 16 convs, in order (vgg_arch.NAMES["vgg19"] minus relu/pool).
VGG_CONVS = [n for n in vgg_arch.NAMES["vgg19"] if n.startswith("conv")]


def _nchw(images: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(dtype)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy()


def _spec(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def _load(module: torch.nn.Module, arrays: dict) -> None:
    full = module.state_dict()
    assert set(arrays) <= set(full), sorted(set(arrays) - set(full))
    full.update({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
    module.load_state_dict(full, strict=True)


def _both_precisions(fn, *inputs: np.ndarray) -> tuple[np.ndarray, float]:
    """``fn(*tensors)`` in float64 (returned as float32) and its float32 run's max deviation."""
    with torch.no_grad():
        ref64 = fn(torch.float64, *(_nchw(x, torch.float64) for x in inputs))
        ref32 = fn(torch.float32, *(_nchw(x) for x in inputs))
    err32 = float(np.max(np.abs(ref32.astype(np.float64) - ref64)))
    return ref64.astype(np.float32), err32


# --------------------------------------------------------------------------------- RRDBNet
def make_rrdbnet() -> dict:
    sizes = dict(num_feat=32, num_block=3, num_grow_ch=16)
    seed, image_seed = 1, 11
    net = RRDBNet(num_in_ch=3, num_out_ch=3, scale=2, **sizes).eval()
    spec = _spec(net)
    weights = ph.state_dict(spec, seed)
    _load(net, weights)
    x = ph.images((2, 48, 32, 3), image_seed)
    interp = torch.nn.functional.interpolate

    def one_upsampling(feat):  # RRDBNet.forward up to its second upsampling step
        feat = net.conv_first(torch.nn.functional.pixel_unshuffle(feat, 2))
        feat = feat + net.conv_body(net.body(feat))
        return net.lrelu(net.conv_up1(interp(feat, scale_factor=2, mode="nearest")))

    def head(feat):
        return net.conv_last(net.lrelu(net.conv_hr(feat)))

    with torch.no_grad():  # the composition is BasicSR's forward minus one step, bit for bit
        t = _nchw(x)
        up2 = net.lrelu(net.conv_up2(interp(one_upsampling(t), scale_factor=2, mode="nearest")))
        assert torch.equal(head(up2), net(t)), "composition differs from RRDBNet.forward"
        unshuffled = basicsr.archs.rrdbnet_arch.pixel_unshuffle(t, scale=2)
        assert torch.equal(unshuffled, torch.nn.functional.pixel_unshuffle(t, 2))

    def forward(dtype, t):
        net.to(dtype)
        return _nhwc(head(one_upsampling(t))).astype(np.float64)

    out, err32 = _both_precisions(forward, x)
    assert np.abs(out).max() > 0.1, "a near-zero output would prove nothing"
    paper = RRDBNet(num_in_ch=3, num_out_ch=3, scale=2)  # Real-ESRGAN x2: 64 / 23 / 32
    return {
        "spec": ph.encode_spec(spec),
        "sizes": np.array(json.dumps(sizes)),
        "seed": np.array(seed),
        "image_seed": np.array(image_seed),
        "image_shape": np.array(x.shape),
        "digest": np.array(ph.digest({**weights, "images": x})),
        "out": out,
        "out_err32": np.array(err32),
        "paper_spec": ph.encode_spec(_spec(paper)),
    }


# --------------------------------------------------------------------------------- Inception
def _fid_inception(weights: dict | None, resize: bool):
    """pytorch-fid's InceptionV3([3]) with ``weights`` instead of the download (None: spec)."""
    module = pytorch_fid.inception
    original_url = module.load_state_dict_from_url
    original_load = torch.nn.Module.load_state_dict
    captured = []
    if weights is None:  # record the real state dict's names and shapes, load nothing
        torch.nn.Module.load_state_dict = lambda self, *a, **k: captured.append(_spec(self))
    module.load_state_dict_from_url = lambda *a, **k: {
        k: torch.from_numpy(np.asarray(v)) for k, v in (weights or {}).items()
    }
    try:
        model = module.InceptionV3([3], resize_input=resize, normalize_input=True).eval()
    finally:
        module.load_state_dict_from_url, torch.nn.Module.load_state_dict = (
            original_url,
            original_load,
        )
    return captured[0] if weights is None else model


def make_inception() -> dict:
    seed = 2
    spec = _fid_inception(None, False)
    weights = ph.state_dict(spec, seed)
    shapes = {"plain": (2, 139, 150, 3), "resized": (1, 77, 90, 3)}
    seeds = {"plain": 21, "resized": 22}
    out = {
        "spec": ph.encode_spec(spec),
        "seed": np.array(seed),
        "digest": np.array(
            ph.digest({**weights, **{k: ph.images(shapes[k], seeds[k]) for k in shapes}})
        ),
    }
    for name, resize in (("plain", False), ("resized", True)):
        model = _fid_inception(weights, resize)  # loaded strictly by pytorch-fid itself
        x = ph.images(shapes[name], seeds[name])

        def forward(dtype, t, model=model):
            return model.to(dtype)(t)[0][:, :, 0, 0].numpy().astype(np.float64)

        features, err32 = _both_precisions(forward, x)
        assert features.shape == (x.shape[0], 2048) and features.max() > 0.1
        out.update({
            f"{name}_image_seed": np.array(seeds[name]),
            f"{name}_image_shape": np.array(x.shape),
            f"{name}_features": features,
            f"{name}_err32": np.array(err32),
        })  # fmt: skip
    # The resize alone (pytorch-fid's F.interpolate call) at other sizes, shrinking included,
    # stored at 2048 fixed positions per case.
    pick = np.random.default_rng(1)
    for i, (in_size, out_size) in enumerate(RESIZE_CASES):
        x = ph.images((2, in_size, in_size + 3, 3), 40 + i)
        size = (out_size, out_size + 1)

        def resize(dtype, t, size=size):
            t = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
            return _nhwc(t).astype(np.float64)

        resized, err32 = _both_precisions(resize, x)
        index = np.sort(pick.choice(resized.size, min(2048, resized.size), replace=False))
        out.update({
            f"resize{i}_image_seed": np.array(40 + i),
            f"resize{i}_image_shape": np.array(x.shape),
            f"resize{i}_shape": np.array(resized.shape),
            f"resize{i}_index": index.astype(np.int32),
            f"resize{i}_values": resized.reshape(-1)[index].astype(np.float32),
            f"resize{i}_err32": np.array(err32),
        })  # fmt: skip
    return out


# --------------------------------------------------------------------------------- VGG19
def make_vgg(tmp: pathlib.Path) -> dict:
    seed, image_seed, pair_seeds = 3, 31, (32, 33)
    net = torchvision.models.vgg19(weights=None).eval()
    full_spec = _spec(net)
    spec = [(k, s) for k, s in full_spec if k.startswith("features.")]
    weights = ph.state_dict(spec, seed)
    _load(net, weights)
    pth = tmp / "vgg19.pth"
    torch.save(net.state_dict(), pth)
    vgg_arch.VGG_PRETRAIN_PATH = str(pth)  # BasicSR loads "pretrained" VGG19 from this file

    x = ph.images((2, 36, 44, 3), image_seed)  # odd sizes on the way: 9 -> 4, 11 -> 5
    extractor = vgg_arch.VGGFeatureExtractor(VGG_CONVS, "vgg19", use_input_norm=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():  # BasicSR's extractor = torchvision's features, pre-activation
        feats = extractor.eval()(_nchw(x))
        conv_index = [i for i, m in enumerate(net.features) if isinstance(m, torch.nn.Conv2d)]
        for name, index in zip(VGG_CONVS, conv_index, strict=True):
            direct = net.features[: index + 1]((_nchw(x) - mean) / std)
            assert torch.equal(direct, feats[name]), name

    def forward(dtype, t):
        extractor.to(dtype)
        f = extractor(t)
        return {name: _nhwc(f[name]).astype(np.float64) for name in VGG_CONVS}

    with torch.no_grad():
        ref64 = forward(torch.float64, _nchw(x, torch.float64))
        ref32 = forward(torch.float32, _nchw(x))
    out = {
        "spec": ph.encode_spec(spec),
        "full_spec": ph.encode_spec(full_spec),
        "seed": np.array(seed),
        "image_seed": np.array(image_seed),
        "image_shape": np.array(x.shape),
        "layers": np.array(json.dumps(VGG_CONVS)),
    }
    pick = np.random.default_rng(0)
    for name in VGG_CONVS:
        full64, full32 = ref64[name], ref32[name]
        index = np.sort(pick.choice(full64.size, min(VGG_SAMPLES, full64.size), replace=False))
        out[f"{name}_index"] = index.astype(np.int32)
        out[f"{name}_values"] = full64.reshape(-1)[index].astype(np.float32)
        out[f"{name}_channel_mean"] = full64.mean(axis=(0, 1, 2)).astype(np.float32)
        out[f"{name}_err32"] = np.array(np.max(np.abs(full32 - full64)))
        out[f"{name}_shape"] = np.array(full64.shape)

    # BasicSR's PerceptualLoss (L1, Real-ESRGAN weights) of x_hat against the ground truth x.
    pair = [ph.images((2, 40, 48, 3), s) for s in pair_seeds]
    loss = PerceptualLoss(REAL_ESRGAN_LAYER_WEIGHTS, "vgg19", use_input_norm=True, criterion="l1")

    def perceptual(dtype, gt, x_hat):
        return np.array(loss.to(dtype)(x_hat, gt)[0].item())

    value, err32 = _both_precisions(perceptual, *pair)
    out.update({
        "perceptual_seeds": np.array(pair_seeds),
        "perceptual_shape": np.array(pair[0].shape),
        "perceptual_layer_weights": np.array(json.dumps(REAL_ESRGAN_LAYER_WEIGHTS)),
        "perceptual_loss": value,
        "perceptual_err32": np.array(err32),
        "digest": np.array(ph.digest({**weights, "images": x, "gt": pair[0], "x_hat": pair[1]})),
    })  # fmt: skip
    return out


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"pytorch-fid {pytorch_fid.__version__}, basicsr {basicsr.__version__}, "
          f"numpy {np.__version__}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        made = {
            "rrdbnet": make_rrdbnet(),
            "fid_inception": make_inception(),
            "vgg19": make_vgg(pathlib.Path(tmp)),
        }
    for name, arrays in made.items():
        path = ph.GOLDEN_DIR / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        errs = {k: float(v) for k, v in arrays.items() if k.endswith("_err32")}
        print(f"wrote {path} ({path.stat().st_size:,} bytes); float32 vs float64: {errs}")


if __name__ == "__main__":
    main()
