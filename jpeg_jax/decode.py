"""``jpeg-jax-decode``: restore JPEG photos with a trained model (``python -m jpeg_jax.decode``).

Run ``jpeg-jax-decode --help`` for the user's view. Library code lives in
:mod:`jpeg_jax.sampling`; this module is the file handling around it: input discovery, early
refusal of files it cannot handle (one line per problem, other files still processed), EXIF
orientation and ICC profiles, atomic writes, no silent overwrites.

Exit status: 0 all files restored; 1 some inputs failed or were skipped; 2 bad arguments or an
unusable checkpoint (nothing processed); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence

from jpeg_jax.platform import configure_xla, restart_with_huge_pages

PROG = "jpeg-jax-decode"
FORMATS = {"png": "PNG", "tiff": "TIFF", "webp": "WEBP"}
JPEG_SUFFIXES = (".jpg", ".jpeg")

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

Exit status: 0 everything restored; 1 some files failed or were skipped (see the messages);
2 bad arguments or checkpoint."""


class InputError(Exception):
    """A problem with one input file; the message is shown after the file's name."""


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
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="EXPORT",
        help="the trained model: a folder written by `python -m jpeg_jax.export_checkpoint`",
    )
    p.add_argument(
        "-n",
        "--num-samples",
        type=_positive,
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
        type=_positive,
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
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=100.0,
        metavar="M",
        help="refuse photos larger than M megapixels before reading them (default 100)",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks of errors")
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _tile(text: str) -> int:
    value = int(text)
    if value < 0 or value % 16:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive multiple of 16, got {value}")
    return value


def collect_inputs(paths: Sequence[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(file, output stem)`` pairs for the inputs, and ``(path, problem)`` for missing ones.

    Folders are searched recursively for ``*.jpg`` / ``*.jpeg`` (any case); their sub-folders are
    mirrored in the output stems. Files named explicitly are taken whatever their extension.
    """
    found, problems = [], []
    for path in paths:
        if os.path.isdir(path):
            files = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                files += [
                    os.path.join(root, n)
                    for n in sorted(names)
                    if n.lower().endswith(JPEG_SUFFIXES)
                ]
            if not files:
                problems.append((path, "folder contains no .jpg or .jpeg files"))
            for f in files:
                found.append((f, os.path.splitext(os.path.relpath(f, path))[0]))
        elif os.path.lexists(path):
            found.append((path, os.path.splitext(os.path.basename(path))[0]))
        else:
            problems.append((path, "no such file or directory"))
    return found, problems


def output_paths(outdir: str, stem: str, args: argparse.Namespace) -> dict[str, str]:
    """``{kind: path}`` of one input's outputs: ``sample1..N``, ``mean``, ``std``."""
    kinds = [f"sample{i + 1}" for i in range(args.num_samples)]
    kinds += ["mean"] * args.mean + ["std"] * args.uncertainty
    return {k: os.path.join(outdir, f"{stem}_{k}.{args.format}") for k in kinds}


def _read_checked(path: str, max_megapixels: float):
    """Reads and checks one input; refuses huge images from the header alone."""
    from jpeg_jax import jpeg

    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise InputError("is a directory") from None
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror or e})") from None
    try:
        info = jpeg.probe_jpeg(data)
        megapixels = info.height * info.width / 1e6
        if megapixels > max_megapixels:
            raise InputError(
                f"image is {info.width}x{info.height} ({megapixels:.0f} megapixels), above the "
                f"--max-megapixels limit of {max_megapixels:g}"
            )
        return jpeg.read_jpeg(data)
    except jpeg.JpegError as e:
        raise InputError(str(e)) from None


# PIL transposes for EXIF orientations 2..8 (as PIL.ImageOps.exif_transpose).
_ORIENTATION = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def to_picture(image, orientation: int, gray: bool):
    """float ``(H, W, 3)`` in [0, 1] -> an upright 8-bit PIL image (mode L when ``gray``)."""
    import numpy as np
    from PIL import Image

    u8 = np.round(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    picture = Image.fromarray(u8[..., 0] if gray else u8)
    if orientation in _ORIENTATION:
        picture = picture.transpose(getattr(Image.Transpose, _ORIENTATION[orientation]))
    return picture


def std_picture(std, orientation: int):
    """Per-pixel std ``(H, W, 3)`` in [0, 1] -> grey map of ``255 * std**(1/4)`` (see --help)."""
    import numpy as np

    level = np.clip(np.asarray(std, np.float64).mean(axis=-1), 0.0, 1.0) ** 0.25
    return to_picture(np.repeat(level[..., None], 3, axis=-1), orientation, gray=True)


def write_atomically(pictures: dict[str, object], fmt: str, icc: bytes | None) -> None:
    """Saves ``{path: PIL image}`` via temporary files in the target folders, then renames all."""
    staged = []
    try:
        for path, picture in pictures.items():
            folder = os.path.dirname(path) or "."
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".jpeg-jax-", suffix=".tmp", dir=folder)
            os.close(fd)
            staged.append((tmp, path))
            options = {
                "WEBP": {"lossless": True, "quality": 100, "exact": True},
                "TIFF": {"compression": "tiff_adobe_deflate"},
            }.get(FORMATS[fmt], {})
            if icc and picture.mode != "L":
                options["icc_profile"] = icc
            picture.save(tmp, format=FORMATS[fmt], **options)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.remove(tmp)


def restore_file(path: str, stem: str, model, args: argparse.Namespace) -> None:
    """Restores one file and writes its outputs (raises InputError for problems of this file)."""
    import jax

    from jpeg_jax import sampling

    targets = output_paths(args.output, stem, args)
    existing = [p for p in targets.values() if os.path.exists(p)]
    if existing and not args.force:
        raise InputError(f"output {existing[0]} exists (use --force to overwrite)")
    image = _read_checked(path, args.max_megapixels)
    tile = args.tile if args.tile and max(image.size) > args.tile else None
    result = sampling.restore(
        model,
        image,
        args.num_samples,
        jax.random.key(args.seed),
        project=args.project,
        tile=tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        return_mean=args.mean,
        return_std=args.uncertainty,
    )
    gray = image.subsampling == "gray"
    pictures = {}
    for kind, target in targets.items():
        if kind == "std":
            pictures[target] = std_picture(result.std, image.orientation)
        else:
            data = result.mean if kind == "mean" else result.samples[int(kind[6:]) - 1]
            pictures[target] = to_picture(data, image.orientation, gray)
    write_atomically(pictures, args.format, image.icc_profile)


def load_model(path: str):
    """``(Generator, variables)`` from an export; raises InputError with a clear message."""
    import jax

    from jpeg_jax import export, sampling
    from jpeg_jax.models import abstract_params

    try:
        model, variables = sampling.resolve_model(export.load(path))
        expected = abstract_params(model)
    except export.ExportError as e:
        raise InputError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: model config not understood ({e})") from None
    shapes = jax.tree.map(lambda a: tuple(a.shape), variables["params"])
    if shapes != jax.tree.map(lambda a: tuple(a.shape), expected):
        raise InputError(f"{path}: the weights do not match the export's model config")
    return model, variables


def _report(path: str, error: BaseException, debug: bool) -> None:
    from tqdm import tqdm

    if debug:
        traceback.print_exception(error, file=sys.stderr)
    message = (
        str(error)
        if isinstance(error, InputError)
        else (f"unexpected {type(error).__name__}: {error}")
    )
    line = " ".join(f"{PROG}: error: {path}: {message}".split())
    tqdm.write(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    if args.uncertainty and args.num_samples < 2:
        build_parser().error("--uncertainty needs at least 2 samples (-n 2 or more)")
    if args.tile and args.tile < 2 * args.overlap:
        build_parser().error(f"--tile must be at least 2 x --overlap ({2 * args.overlap})")
    if argv is None:  # run as a program (not called from Python): see restart_with_huge_pages
        restart_with_huge_pages()
    configure_xla()  # before JAX starts its backend (the first computation below)
    from tqdm import tqdm

    try:
        model = load_model(args.checkpoint)
    except Exception as e:  # a checkpoint nothing can be done with: stop before any file
        if args.debug:
            traceback.print_exception(e, file=sys.stderr)
        problem = e if isinstance(e, InputError) else f"{args.checkpoint}: unusable ({e!r})"
        print(" ".join(f"{PROG}: error: checkpoint {problem}".split()), file=sys.stderr)
        return 2
    files, problems = collect_inputs(args.inputs)
    for path, problem in problems:
        _report(path, InputError(problem), False)
    failures, seen = len(problems), {}
    try:
        for path, stem in tqdm(files, desc="restoring", unit="photo", disable=None):
            try:
                if stem in seen:
                    raise InputError(f"same output name as {seen[stem]}; rename one of them")
                seen[stem] = path
                restore_file(path, stem, model, args)
            except Exception as e:  # one bad file must not stop the others
                failures += 1
                _report(path, e, args.debug)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if failures:
        print(f"{PROG}: {failures} of {len(files) + len(problems)} inputs failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
