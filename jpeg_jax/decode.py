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
import json
import os
import sys
import traceback
from collections.abc import Sequence

from jpeg_jax import decode_args
from jpeg_jax.decode_args import PROG
from jpeg_jax.pictures import (
    std_picture,
    stored_box,
    to_picture,
    upright_box,
    write_pictures,
)
from jpeg_jax.platform import configure_xla, restart_with_huge_pages

JPEG_SUFFIXES = (".jpg", ".jpeg")


class InputError(Exception):
    """A problem with one input file; the message is shown after the file's name."""


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
    """``{kind: path}`` of one input's outputs: ``sample1..N``, ``mean``, ``std``, and with
    ``--components`` ``region_mean``, ``pcI_minus``, ``pcI_plus``, ``pcs`` (JSON)."""
    kinds = [f"sample{i + 1}" for i in range(args.num_samples)]
    kinds += ["mean"] * args.mean + ["std"] * args.uncertainty
    if args.components:
        kinds.append("region_mean")
        kinds += [f"pc{i + 1}_{sign}" for i in range(args.components) for sign in ("minus", "plus")]
    paths = {k: os.path.join(outdir, f"{stem}_{k}.{args.format}") for k in kinds}
    if args.components:
        paths["pcs"] = os.path.join(outdir, f"{stem}_pcs.json")
    return paths


def allow_pillow_to_decode(max_megapixels: float) -> None:
    """Lets Pillow decode photos up to ``max_megapixels``: without this it warns about a
    "decompression bomb" above 89 megapixels and refuses above 179. For programs whose
    ``--max-megapixels`` refuses larger photos from their header first (:func:`read_checked`);
    it raises ``PIL.Image.MAX_IMAGE_PIXELS``, never lowers it."""
    from PIL import Image

    limit = int(max_megapixels * 1e6)
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit


def read_checked(source: str | bytes, max_megapixels: float):
    """Reads and checks one input (a path or the file's bytes) into a ``JpegImage``.

    Refuses images above ``max_megapixels`` from the header alone, before decoding. Raises
    :class:`InputError` with the one-line message the CLI prints after the file's name.
    """
    from jpeg_jax import jpeg

    if isinstance(source, bytes):
        data = source
    else:
        try:
            with open(source, "rb") as f:
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


def region_box(image, region: tuple[int, int, int, int]):
    """``--region`` (LEFT, TOP, RIGHT, BOTTOM of the upright photo) -> a stored-pixel
    :class:`jpeg_jax.posterior.Box` on the 16-pixel grid; InputError if it misses the photo."""
    from jpeg_jax import posterior

    left, top, right, bottom = region
    box = stored_box((top, left, bottom, right), image.orientation, image.size)
    try:
        return posterior.snap_box(box, image.size)
    except ValueError as e:
        raise InputError(f"--region {left},{top},{right},{bottom}: {e}") from None


def restore_file(path: str, stem: str, model, args: argparse.Namespace) -> None:
    """Restores one file and writes its outputs (raises InputError for problems of this file)."""
    import jax

    from jpeg_jax import sampling

    targets = output_paths(args.output, stem, args)
    existing = [p for p in targets.values() if os.path.exists(p)]
    if existing and not args.force:
        raise InputError(f"output {existing[0]} exists (use --force to overwrite)")
    image = read_checked(path, args.max_megapixels)
    box = region_box(image, args.region) if args.region else None
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
        temperature=args.temperature,
        return_mean=args.mean,
        return_std=args.uncertainty,
    )
    samples, mean, std = result.samples, result.mean, result.std
    if args.redraw_seed is not None:
        samples = _redraw(model, image, samples, box, args)
        mean = samples.mean(axis=0) if args.mean else None
        std = samples.std(axis=0) if args.uncertainty else None
    gray = image.subsampling == "gray"
    outputs = {}
    for kind, target in targets.items():
        if kind == "std":
            outputs[target] = std_picture(std, image.orientation)
        elif kind == "mean":
            outputs[target] = to_picture(mean, image.orientation, gray)
        elif kind.startswith("sample"):
            outputs[target] = to_picture(samples[int(kind[6:]) - 1], image.orientation, gray)
    if args.components:
        outputs.update(_components(samples, box, image, targets, args))
    write_pictures(outputs, args.format, image.icc_profile)


def _redraw(model, image, samples, box, args):
    """Every sample with ``box`` re-drawn, sample i from ``fold_in(key(redraw_seed), i)``."""
    import jax
    import numpy as np

    from jpeg_jax import posterior

    key = jax.random.key(args.redraw_seed)
    redrawn = [
        posterior.redraw(
            model,
            image,
            sample,
            box,
            jax.random.fold_in(key, i),
            temperature=args.temperature,
            project=args.project,
        )
        for i, sample in enumerate(samples)
    ]
    return np.stack(redrawn)


def _components(samples, box, image, targets, args) -> dict[str, object]:
    """``--components`` outputs: the region's mean, mean -/+ sqrt(lambda_i) v_i, the JSON."""
    from jpeg_jax import posterior

    pcs = posterior.principal_components(samples[(slice(None), *box.slices())], args.components)
    gray = image.subsampling == "gray"
    outputs = {targets["region_mean"]: to_picture(pcs.mean, image.orientation, gray)}
    for i in range(args.components):
        for sign, value in (("minus", -1.0), ("plus", 1.0)):
            picture = to_picture(pcs.image(i, value), image.orientation, gray)
            outputs[targets[f"pc{i + 1}_{sign}"]] = picture
    top, left, bottom, right = upright_box(box, image.orientation, image.size)
    summary = {
        "region": {"left": left, "top": top, "right": right, "bottom": bottom},
        "num_samples": int(samples.shape[0]),
        "temperature": args.temperature,
        "variance": [float(v) * 255.0**2 for v in pcs.variances],
        "explained_fraction": [float(v) for v in pcs.explained],
        "total_variance": pcs.total_variance * 255.0**2,
        "units": "variance in 8-bit grey levels squared, summed over the region's values",
    }
    outputs[targets["pcs"]] = (json.dumps(summary, indent=2) + "\n").encode()
    return outputs


def load_model(path: str):
    """``(Generator, variables)`` from an export; raises InputError with a clear message
    (for any problem: the message of an unforeseen one names its type)."""
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
    except Exception as e:
        raise InputError(f"{path}: unusable ({e!r})") from e
    shapes = jax.tree.map(lambda a: tuple(a.shape), variables["params"])
    if shapes != jax.tree.map(lambda a: tuple(a.shape), expected):
        raise InputError(f"{path}: the weights do not match the export's model config")
    return model, variables


def describe_error(error: BaseException) -> str:
    """The one-line message shown for a file that failed (after its name)."""
    if isinstance(error, InputError):
        message = str(error)
    else:
        message = f"unexpected {type(error).__name__}: {error}"
    return " ".join(message.split())


def _report(path: str, error: BaseException, debug: bool) -> None:
    from tqdm import tqdm

    if debug:
        traceback.print_exception(error, file=sys.stderr)
    tqdm.write(f"{PROG}: error: {' '.join(path.split())}: {describe_error(error)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args = decode_args.parse_args(argv)
    if argv is None:  # run as a program (not called from Python): see restart_with_huge_pages
        restart_with_huge_pages()
    configure_xla()  # before JAX starts its backend (the first computation below)
    allow_pillow_to_decode(args.max_megapixels)
    from tqdm import tqdm

    try:
        model = load_model(args.checkpoint)
    except InputError as e:  # a checkpoint nothing can be done with: stop before any file
        if args.debug:
            traceback.print_exception(e, file=sys.stderr)
        print(f"{PROG}: error: checkpoint {describe_error(e)}", file=sys.stderr)
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
