"""Porting BasicSR ``RRDBNet`` weights (ESRGAN / Real-ESRGAN checkpoints) to :class:`Generator`.

BasicSR names map one to one onto ours: ``body.<i>.rdb<j>.conv<k>`` -> ``body_<i>/rdb<j>/conv<k>``,
``conv_first``, ``conv_body``, ``conv_up1``, ``conv_hr``, ``conv_last``; PyTorch's OIHW kernels
become HWIO. BasicSR's ``conv_up2`` (its second x2 upsampling) has no counterpart: our generator
upsamples once, back to the input size, so it is dropped. Real-ESRGAN x2 checkpoints
(``RRDBNet(num_in_ch=3, scale=2)``, which unshuffles by 2 like we do) therefore give a network
whose trunk, first upsampling and head are the pretrained ones.

The state dict is checked before anything is converted: an entry that is not a BasicSR
``RRDBNet`` parameter, a missing one (any of the five head/tail convs, or any conv of a block
``0 .. n-1`` where ``n - 1`` is the highest block index present), or a ``conv_first`` that does
not take 12 channels is a ``ValueError`` naming the keys. With a ``template``, every template
parameter outside FiLM (``film_*``, ``qtable_embed``) must come from the state dict.

The generator's trunk has two parameter layouts ("stackings"): unrolled, one subtree per
block (``body_<i>``, ``film_body_<i>``), as BasicSR names them and as every export before the
scanned trunk holds them; and scanned (``Generator(scan=True)``), one subtree ``body`` whose
leaves have a leading ``num_block`` axis (with the blocks' FiLM under ``body/film``).
:func:`stack_blocks`, :func:`unstack_blocks` and :func:`to_stacking` convert between them.

When the target model has noise injection, the kernels get zero weights for the noise channel
(and ``noise_scale`` = 1), so the ported model starts as the deterministic BasicSR network and
learns how much noise to use. Nothing here needs PyTorch: tensors are read with ``np.asarray``.
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import re
import types
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from jpeg_jax.models.torch_io import to_numpy

_NAME = re.compile(r"^(?:body\.(\d+)\.(rdb[123])\.(conv[1-5])|(conv_\w+))\.(weight|bias)$")
_NOISY = re.compile(r"^(body_\d+/rdb\d/conv\d|conv_up1)$")
_TOP_LEVEL = ("conv_first", "conv_body", "conv_up1", "conv_hr", "conv_last")
_DROPPED = ("conv_up2",)  # BasicSR's second x2 upsampling; our generator has none
_FILM = re.compile(r"^(film_\w+|qtable_embed)$")  # template-only (not in BasicSR)


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _module_paths(state_dict: Mapping[str, Any]) -> dict[str, str]:
    """``{BasicSR key: our module path}`` for every parameter; errors on unknown/missing keys."""
    paths, unknown = {}, []
    for key in state_dict:
        m = _NAME.match(key)
        if m is None or (m.group(4) is not None and m.group(4) not in _TOP_LEVEL + _DROPPED):
            unknown.append(key)
        elif m.group(4) is None:
            paths[key] = f"body_{int(m.group(1))}/{m.group(2)}/{m.group(3)}"
        elif m.group(4) not in _DROPPED:
            paths[key] = m.group(4)
    if unknown:
        hint = ""
        if any(k in ("params", "params_ema") for k in unknown):
            hint = " (a BasicSR checkpoint: pass checkpoint['params_ema'] or ['params'])"
        elif all(k.startswith("module.") for k in unknown):
            hint = " (strip the DataParallel 'module.' prefix)"
        raise ValueError(
            f"not a BasicSR RRDBNet state dict: unknown keys {_listing(unknown)}{hint}"
        )
    blocks = {int(p.split("/")[0][5:]) for p in paths.values() if p.startswith("body_")}
    expected = [f"{name}.{kind}" for name in _TOP_LEVEL for kind in ("weight", "bias")]
    expected += [
        f"body.{i}.rdb{j}.conv{k}.{kind}"
        for i in range(max(blocks, default=-1) + 1)
        for j in (1, 2, 3)
        for k in range(1, 6)
        for kind in ("weight", "bias")
    ]
    missing = [key for key in expected if key not in paths] + ([] if blocks else ["body.0.*"])
    if missing:
        raise ValueError(f"incomplete BasicSR RRDBNet state dict: missing {_listing(missing)}")
    cin = np.shape(state_dict["conv_first.weight"])[1]
    if cin != 12:
        raise ValueError(
            f"conv_first.weight takes {cin} input channels: only RRDBNet(num_in_ch=3, scale=2) "
            "(12 channels after its x2 pixel-unshuffle) ports to this generator"
        )
    return paths


_BLOCK = re.compile(r"^(body|film_body)_(\d+)$")


def is_stacked(params: Mapping[str, Any]) -> bool:
    """Whether generator ``params`` have the scanned layout (a stacked ``body``)."""
    return "body" in params


def stack_blocks(params: Mapping[str, Any]) -> dict:
    """Unrolled generator params (``body_<i>``, ``film_body_<i>``) -> the scanned layout.

    Returns a new dict (numpy leaves for the stacked blocks); params already stacked are
    returned as they are.
    """
    if is_stacked(params):
        return dict(params)
    out = {k: v for k, v in params.items() if not _BLOCK.match(k)}
    n = sum(1 for k in params if k.startswith("body_"))
    if n == 0:
        raise ValueError("generator params without body_<i> blocks")
    blocks = [dict(params[f"body_{i}"]) for i in range(n)]
    if "film_body_0" in params:
        for i, block in enumerate(blocks):
            block["film"] = params[f"film_body_{i}"]
    out["body"] = jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *blocks)
    return out


def unstack_blocks(params: Mapping[str, Any]) -> dict:
    """Scanned generator params (stacked ``body``) -> the unrolled layout; the inverse of
    :func:`stack_blocks`. Unrolled params are returned as they are."""
    if not is_stacked(params):
        return dict(params)
    out = {k: v for k, v in params.items() if k != "body"}
    body = dict(params["body"])
    film = body.pop("film", None)
    n = len(np.asarray(jax.tree.leaves(body)[0]))
    for i in range(n):
        out[f"body_{i}"] = jax.tree.map(lambda a, i=i: a[i], body)
        if film is not None:
            out[f"film_body_{i}"] = jax.tree.map(lambda a, i=i: a[i], film)
    return out


def to_stacking(params: Mapping[str, Any], *, scan: bool) -> dict:
    """Generator params in the layout ``Generator(scan=scan)`` expects, from either layout."""
    return stack_blocks(params) if scan else unstack_blocks(params)


def params_from_basicsr(
    state_dict: Mapping[str, Any],
    *,
    noise: bool = False,
    template: Any = None,
    scan: bool | None = None,
) -> dict:
    """Converts a BasicSR ``RRDBNet`` state_dict to :class:`Generator` params.

    Args:
      state_dict: name -> tensor/array, e.g. ``torch.load(path)["params_ema"]``. The network must
        unshuffle by 2 (``RRDBNet(num_in_ch=3, scale=2)``, i.e. ``conv_first`` has 12 inputs).
        ``conv_up2.*`` entries are accepted and dropped.
      noise: build params for ``Generator(noise=True)``: zero noise-channel weights, scales 1.
      template: optional params of the target model (e.g. from ``Generator(film=True).init``),
        in either stacking; converted entries replace its leaves (shapes checked), the others
        (FiLM) are kept.
      scan: the stacking of the result (``Generator(scan=...)``); default: the template's, or
        unrolled without a template.

    Returns:
      The nested ``params`` dict (without the ``{"params": ...}`` wrapper).

    Raises:
      ValueError: unknown or missing keys, a ``conv_first`` that is not 12-channel, or (with
        ``template``) a shape mismatch or a non-FiLM template parameter the state dict lacks;
        the message names the keys.
    """
    if scan is None:
        scan = template is not None and is_stacked(template)
    if template is not None:
        template = unstack_blocks(template)
    flat = {}
    for key, path in _module_paths(state_dict).items():
        kind = key.rsplit(".", 1)[1]
        array = to_numpy(state_dict[key])
        if kind == "weight":
            array = array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            if noise and _NOISY.match(path):
                array = np.concatenate([array, np.zeros_like(array[:, :, :1])], axis=2)
        flat[(*path.split("/"), "kernel" if kind == "weight" else "bias")] = array
        if noise and kind == "weight" and _NOISY.match(path):
            flat[(*path.split("/"), "noise_scale")] = np.ones((), np.float32)
    if template is None:
        return to_stacking(traverse_util.unflatten_dict(flat), scan=scan)
    target = traverse_util.flatten_dict(jax.tree.map(np.asarray, template))
    for key, array in flat.items():
        if key not in target or target[key].shape != array.shape:
            got = target[key].shape if key in target else "missing"
            raise ValueError(f"{'/'.join(key)}: template has {got}, converted {array.shape}")
        target[key] = array
    left = ["/".join(k) for k in target if k not in flat and not _FILM.match(k[0])]
    if left:
        raise ValueError(f"template parameters not in the state dict: {_listing(left)}")
    return to_stacking(traverse_util.unflatten_dict(target), scan=scan)


def load_basicsr_arch() -> types.ModuleType:
    """Loads BasicSR's ``rrdbnet_arch.py`` by file path, without importing the ``basicsr`` package.

    ``import basicsr`` pulls in OpenCV, torchvision and compiled ops; the RRDBNet file only needs
    torch plus three helpers of ``arch_util.py`` (``make_layer``, ``pixel_unshuffle``,
    ``default_init_weights``), whose original source is taken from that file. Used by the
    parity test and the benchmark; requires ``torch`` and ``pip install basicsr --no-deps``.

    Returns:
      A module with BasicSR's ``RRDBNet``, ``RRDB``, ``ResidualDenseBlock``, ``pixel_unshuffle``.

    Raises:
      ImportError: if torch or the basicsr sources are not installed.
    """
    import torch  # noqa: F401  (ImportError is the signal to skip)

    spec = importlib.util.find_spec("basicsr")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("basicsr is not installed (pip install basicsr==1.4.2 --no-deps)")
    archs = pathlib.Path(next(iter(spec.submodule_search_locations))) / "archs"
    module = types.ModuleType("basicsr_rrdbnet_standalone")
    exec(
        "import torch\nfrom torch import nn\nfrom torch.nn import functional as F\n"
        "from torch.nn import init\nfrom torch.nn.modules.batchnorm import _BatchNorm\n"
        "class _Registry:\n    def register(self):\n        return lambda obj: obj\n"
        "ARCH_REGISTRY = _Registry()\n",
        module.__dict__,
    )
    helpers = {"make_layer", "pixel_unshuffle", "default_init_weights"}
    for name, wanted in (("arch_util.py", helpers), ("rrdbnet_arch.py", None)):
        tree = ast.parse((archs / name).read_text())
        tree.body = [
            node
            for node in tree.body
            if not isinstance(node, ast.Import | ast.ImportFrom)
            and (wanted is None or getattr(node, "name", None) in wanted)
        ]
        exec(compile(tree, str(archs / name), "exec"), module.__dict__)
    return module
