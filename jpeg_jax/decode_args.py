"""The command line of ``jpeg-jax-decode``: help text, options and their checks.

:func:`parse_args` is what :func:`jpeg_jax.decode.main` calls; errors exit with status 2 and
argparse's usage message.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from jpeg_jax.pictures import FORMATS

PROG = "jpeg-jax-decode"

DESCRIPTION = """\
Restore JPEG photos: remove blocking, ringing and colour smearing, and bring back plausible
fine detail, using a model trained for it (Man et al., "High-Perceptual Quality JPEG Decoding
via Posterior Sampling", 2023).

A heavily compressed JPEG has lost information: many different originals would give the very
same file. Each output "sample" is one such plausible original, drawn at random by the model:
sharp and natural-looking. With --project it also agrees with everything your JPEG records
(saved as a JPEG with the same settings it gives back your file, up to 8-bit rounding).
Different samples differ in details the file cannot pin down (skin texture, foliage, hair).
Ask for several with -n to see the range of possibilities; --mean averages them into one
smoother, "safest" picture; --uncertainty maps where they disagree.

Outputs go to OUTDIR as lossless images named after each input: NAME_sample1.png,
NAME_sample2.png, ..., NAME_mean.png, NAME_std.png. Photos are turned upright as a viewer
shows them (EXIF orientation) and keep their colour profile (ICC). Existing files are never
overwritten unless you pass --force."""

EPILOG = """\
The uncertainty map (NAME_std) is a grey image: black where all samples agree, brighter where
they differ. A pixel of grey level g means a standard deviation of (g/255)^4 over the samples
and colour channels, in units of the full 0..1 range (so g=64 is about 1 grey level of 255,
g=128 about 16, g=255 the whole range) -- the fourth root shows small differences.

Examples:
  jpeg-jax-decode photo.jpg -o restored --checkpoint exports/imagenet
  jpeg-jax-decode holidays/ -o restored --checkpoint exports/imagenet -n 8 --mean --uncertainty
  jpeg-jax-decode scan.jpeg -o out --checkpoint exports/ffhq --project --format tiff
  jpeg-jax-decode face.jpg -o out --checkpoint exports/ffhq -n 16 --temperature 0.7 \\
      --region 120,80,248,208 --components 3 --redraw-seed 1

To explore samples interactively (re-draw regions with the mouse, browse, compare with the
JPEG), run jpeg-jax-explore --checkpoint EXPORT and open the page it names.

Exit status: 0 everything restored; 1 some files failed or were skipped (see the messages);
2 bad arguments or checkpoint."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see ``--help``)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="JPEG files, or folders searched recursively for *.jpg / *.jpeg",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="folder for the restored images (created if needed)",
    )
    add_checkpoint_option(p)
    p.add_argument(
        "-n",
        "--num-samples",
        type=positive_int,
        default=1,
        metavar="N",
        help="how many different restorations to draw per photo (default 1)",
    )
    p.add_argument(
        "--project",
        action="store_true",
        help="make every output agree exactly with what the JPEG file records (the paper's "
        "'-P'): only detail the file cannot pin down is changed",
    )
    p.add_argument(
        "--mean",
        action="store_true",
        help="also write NAME_mean: the average of the samples (smoother; best "
        "pixel-wise accuracy with many samples, e.g. -n 16)",
    )
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write NAME_std: where the samples disagree (needs -n 2 or more)",
    )
    p.add_argument(
        "--temperature",
        type=_temperature,
        default=1.0,
        metavar="T",
        help="how much randomness the model injects (default 1, as trained): 0 gives its one "
        "deterministic restoration (all samples equal), below 1 more conservative samples, "
        "above 1 more varied ones",
    )
    p.add_argument(
        "--region",
        type=_region,
        metavar="LEFT,TOP,RIGHT,BOTTOM",
        help="a rectangle of the photo as shown, in pixels (right and bottom excluded, as "
        "image editors' crop boxes), for --redraw-seed and --components; widened to the "
        "file's 16-pixel grid",
    )
    p.add_argument(
        "--redraw-seed",
        type=int,
        metavar="S",
        help="re-draw --region of every sample with new randomness from seed S; every pixel "
        "outside the region stays exactly as without this option (the new content is blended "
        "in over 16 pixels inside the region's edges)",
    )
    p.add_argument(
        "--components",
        type=positive_int,
        metavar="K",
        help="the K main ways the samples differ inside --region (principal components, "
        "needs -n K+1 or more): writes NAME_region_mean, NAME_pcI_minus and NAME_pcI_plus "
        "(the mean -/+ one standard deviation along component I) and NAME_pcs.json (their "
        "variances and the fraction of the samples' variance each explains)",
    )
    p.add_argument(
        "--tile",
        type=_tile,
        default=1024,
        metavar="T",
        help="process photos larger than T x T pixels in overlapping tiles of this "
        "size, multiple of 16 (default 1024; 0 = never tile); less memory",
    )
    p.add_argument(
        "--overlap",
        type=_tile,
        default=64,
        metavar="O",
        help="overlap of neighbouring tiles in pixels, multiple of 16 (default 64; raise it if "
        "you ever see tile seams); --tile must be at least twice this",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        metavar="B",
        help="samples computed at once (default 1; more is faster on a GPU)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="random seed: the same seed gives the same samples (default 0)",
    )
    p.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default="png",
        help="output format, always lossless (default png)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_limit_and_debug_options(p, max_megapixels=100.0, when=" before reading them")
    return p


def add_checkpoint_option(p: argparse.ArgumentParser) -> None:
    """``--checkpoint EXPORT`` (required), as the decoder and the explorer take it."""
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="EXPORT",
        help="the trained model: a folder written by `python -m jpeg_jax.export_checkpoint`",
    )


def add_limit_and_debug_options(
    p: argparse.ArgumentParser, *, max_megapixels: float, when: str = ""
) -> None:
    """``--max-megapixels M`` (default ``max_megapixels``) and ``--debug``: the options the
    decoder and the explorer (``jpeg-jax-explore``) share; ``when`` ends the limit's help."""
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=max_megapixels,
        metavar="M",
        help=f"refuse photos larger than M megapixels{when} (default {max_megapixels:g})",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks of errors")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _temperature(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _region(text: str) -> tuple[int, int, int, int]:
    try:
        left, top, right, bottom = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be four integers LEFT,TOP,RIGHT,BOTTOM, got {text!r}"
        ) from None
    if min(left, top) < 0 or right <= left or bottom <= top:
        raise argparse.ArgumentTypeError(
            f"needs 0 <= LEFT < RIGHT and 0 <= TOP < BOTTOM, got {text!r}"
        )
    return left, top, right, bottom


def _tile(text: str) -> int:
    value = int(text)
    if value < 0 or value % 16:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive multiple of 16, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parsed and cross-checked arguments (exits with status 2 on an error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.uncertainty and args.num_samples < 2:
        parser.error("--uncertainty needs at least 2 samples (-n 2 or more)")
    if args.tile and args.tile < 2 * args.overlap:
        parser.error(f"--tile must be at least 2 x --overlap ({2 * args.overlap})")
    if (args.redraw_seed is not None or args.components) and not args.region:
        parser.error("--redraw-seed and --components need --region")
    if args.region and args.redraw_seed is None and not args.components:
        parser.error("--region is used by --redraw-seed or --components; give one")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        parser.error(f"-o/--output {args.output}: exists and is not a folder")
    if args.components and args.num_samples < args.components + 1:
        parser.error(
            f"--components {args.components} needs at least {args.components + 1} samples "
            f"(-n {args.components + 1} or more)"
        )
    return args
