"""Appendix Table 2: is JPEG lossless with block size 1, tables of ones and no subsampling?

Runs our codec on the embedded photos (the paper used FFHQ's test set and libjpeg-9d) and prints
the RMSE (8-bit) of the round trip for the YCbCr path (libjpeg's integer colour conversion, and
the float one) and for the RGB path (no colour transform). Writes benchmarks/results/table2.json.

    python benchmarks/table2.py
"""

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # XLA:CPU's scratch memory in 2 MiB pages (jpeg_jax.platform)
configure_xla()

import json  # noqa: E402
import os  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jpeg_jax import jpeg  # noqa: E402
from jpeg_jax.datasets import embedded  # noqa: E402
from jpeg_jax.jpeg import dct  # noqa: E402


def rgb_path(images):
    planes = jnp.moveaxis(images * 255.0 - 128.0, -1, 0)
    coefficients = jnp.round(dct.dct_2d(dct.blockify(planes, 1)))
    return (jnp.moveaxis(dct.unblockify(dct.idct_2d(coefficients)), 0, -1) + 128.0) / 255.0


def main():
    ones = jnp.ones((2, 8, 8))
    rows = {"YCbCr (libjpeg integer colour)": [], "YCbCr (float colour)": [], "RGB": []}
    for name in embedded.PHOTOS:
        x = jnp.asarray(embedded.load_photo(name) / 255.0, jnp.float32)
        outs = {
            "YCbCr (libjpeg integer colour)": jpeg.compress(
                x, ones, subsampling="4:4:4", block_size=1, exact=True
            ),
            "YCbCr (float colour)": jpeg.compress(
                x, ones, subsampling="4:4:4", block_size=1, exact=False
            ),
            "RGB": rgb_path(x),
        }
        for key, out in outs.items():
            err = np.round(np.asarray(out) * 255) - np.asarray(x) * 255
            rows[key].append(float(np.sqrt(np.mean(err**2))))
    result = {k: float(np.mean(v)) for k, v in rows.items()}
    print("| colour space | block size | RMSE (ours, embedded photos) | paper (libjpeg-9d, FFHQ) |")
    print("|---|---|---|---|")
    for k, v in result.items():
        paper = "0" if k == "RGB" else "0.5465"
        print(f"| {k} | 1 | {v:.4f} | {paper} |")
    os.makedirs("benchmarks/results", exist_ok=True)
    with open("benchmarks/results/table2.json", "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
