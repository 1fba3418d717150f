"""The explorer's state and work: one :class:`Session` per opened JPEG, :class:`Jobs` in a worker.

Everything lives in memory (nothing is written to disk). Model work runs in one worker thread,
one job at a time (the machine's cores are shared by every job); a job reports its progress in
units (samples) and can be cancelled between units. Images are kept as float32 ``(H, W, 3)`` in
[0, 1] in the file's stored orientation; :meth:`Session.picture` makes the upright 8-bit view.

Sample ``i`` of a session with seed ``s`` is ``restore(model, image, 1, fold_in(key(s), i))``,
so changing the temperature keeps each sample's noise (scaled by the new factor) and asking for
more samples keeps the ones already drawn.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from jpeg_jax import decode, jpeg, pictures, posterior, sampling

TILE = 1024  # as the decoder's default: bounded memory for large photos
REDRAW_STREAM = 1 << 30  # fold_in offset of re-draw keys (sample keys use 0, 1, 2, ...)
COMPONENTS_STREAM = 1 << 29


class Cancelled(Exception):
    """Raised inside a job that was cancelled; the job ends quietly."""


@dataclasses.dataclass
class Job:
    """One piece of model work; ``done`` of ``total`` units, ``result`` a JSON-able dict."""

    kind: str
    total: int
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    done: int = 0
    status: str = "running"  # running | done | failed | cancelled
    message: str = ""
    error: str = ""
    result: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    cancelled: bool = False

    def step(self, message: str) -> None:
        """Starts the next unit of work (raises :class:`Cancelled` if the job was cancelled)."""
        if self.cancelled:
            raise Cancelled
        self.message = message

    def to_json(self) -> dict:
        keys = ("id", "kind", "total", "done", "status", "message", "error", "result", "seconds")
        return {k: getattr(self, k) for k in keys}


class Jobs:
    """A single worker thread running jobs in order; the last 64 jobs stay queryable."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explore-job")
        self._jobs: dict[str, Job] = {}

    def submit(self, kind: str, total: int, work: Callable[[Job], dict]) -> Job:
        job = Job(kind, total)
        self._jobs[job.id] = job
        for old in list(self._jobs)[:-64]:
            del self._jobs[old]
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    @staticmethod
    def _run(job: Job, work: Callable[[Job], dict]) -> None:
        start = time.perf_counter()
        try:
            job.result = work(job) or {}
            job.status = "done"
        except Cancelled:
            job.status = "cancelled"
        except Exception as e:  # shown on the page as the CLI would show it
            job.status, job.error = "failed", decode.describe_error(e)
        finally:
            job.seconds = time.perf_counter() - start

    def shutdown(self) -> None:
        for job in self._jobs.values():
            job.cancelled = True
        self._pool.shutdown(wait=True, cancel_futures=True)


class Session:
    """One opened JPEG: its samples, the settings they were drawn with, the region analysis."""

    def __init__(self, model: Any, image: jpeg.JpegImage, name: str) -> None:
        self.id = uuid.uuid4().hex
        self.model, self.image, self.name = model, image, name
        self.seed = int(np.random.default_rng().integers(2**31))
        self.temperature, self.project = 1.0, False
        self.samples: list[np.ndarray] = []
        self.versions: list[int] = []
        self.components: posterior.Components | None = None
        self.components_box: posterior.Box | None = None
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._draw_job: Job | None = None
        self._consistency: dict[tuple, dict] = {}

    # ----------------------------------------------------------------- geometry and state
    @property
    def gray(self) -> bool:
        return self.image.subsampling == "gray"

    def upright_size(self) -> tuple[int, int]:
        h, w = self.image.size
        return (w, h) if self.image.orientation in (5, 6, 7, 8) else (h, w)

    def region(self, box: list[float]) -> posterior.Box:
        """An upright ``[left, top, right, bottom]`` (as ``--region``) -> stored grid box."""
        left, top, right, bottom = (float(v) for v in box)
        stored = pictures.stored_box((top, left, bottom, right), self.image.orientation,
                                     self.image.size)  # fmt: skip
        return posterior.snap_box(stored, self.image.size)

    def upright(self, box: posterior.Box) -> list[int]:
        """A stored box as upright ``[left, top, right, bottom]``."""
        top, left, bottom, right = pictures.upright_box(box, self.image.orientation,
                                                        self.image.size)  # fmt: skip
        return [left, top, right, bottom]

    def state(self) -> dict:
        with self._lock:
            pcs = self.components
            return {
                "session": self.id,
                "name": self.name,
                "size": list(self.upright_size()),
                "subsampling": self.image.subsampling,
                "seed": self.seed,
                "temperature": self.temperature,
                "project": self.project,
                "versions": list(self.versions),
                "components": None
                if pcs is None
                else {
                    "box": self.upright(self.components_box),
                    "variance": [float(v) * 255.0**2 for v in pcs.variances],
                    "explained": [float(v) for v in pcs.explained],
                    "total_variance": pcs.total_variance * 255.0**2,
                },
            }

    # ----------------------------------------------------------------------- model work
    def draw(self, job: Job, count: int, temperature: float, project: bool, fresh: bool) -> dict:
        """Makes the session hold ``count`` samples at ``temperature`` (job units: samples)."""
        temperature = sampling.check_temperature(temperature)
        with self._lock:
            if fresh:
                self.seed = int(np.random.default_rng().integers(2**31))
            if fresh or temperature != self.temperature or project != self.project:
                self.samples, self.versions = [], []
            self.temperature, self.project = temperature, project
            del self.samples[count:], self.versions[count:]
            start = len(self.samples)
        job.total = count - start
        for i in range(start, count):
            job.step(f"drawing sample {i + 1} of {count}")
            key = jax.random.fold_in(jax.random.key(self.seed), i)
            tile = TILE if max(self.image.size) > TILE else None
            sample = sampling.restore(
                self.model, self.image, 1, key, project=project, tile=tile, temperature=temperature
            ).samples[0]
            with self._lock:
                if job.cancelled:
                    raise Cancelled
                self.samples.append(sample)
                self.versions.append(next(self._counter))
            job.done += 1
        return {"count": count}

    def start_draw(self, jobs: Jobs, **settings) -> Job:
        """Cancels this session's previous draw and submits a new one."""
        if self._draw_job is not None:
            self._draw_job.cancelled = True
        self._draw_job = jobs.submit(
            "draw", settings["count"], lambda job: self.draw(job, **settings)
        )
        return self._draw_job

    def redraw(self, job: Job, index: int, box: posterior.Box, temperature: float) -> dict:
        """Re-draws ``box`` of sample ``index`` (projected if the session's samples are)."""
        job.step("re-drawing the region")
        with self._lock:
            if not 0 <= index < len(self.samples):
                raise decode.InputError(f"there is no sample {index + 1}")
            current = self.samples[index]
        key = jax.random.fold_in(jax.random.key(self.seed), REDRAW_STREAM + next(self._counter))
        out = posterior.redraw(
            self.model, self.image, current, box, key, temperature=temperature, project=self.project
        )
        with self._lock:
            self.samples[index] = out
            self.versions[index] = next(self._counter)
        job.done = 1
        return {"index": index, "box": self.upright(box), "version": self.versions[index]}

    def principal_components(
        self, job: Job, box: posterior.Box, count: int, k: int, temperature: float
    ) -> dict:
        """The top-``k`` principal components of ``count`` samples of ``box``."""
        if count < k + 1:
            raise decode.InputError(f"{k} components need at least {k + 1} samples")
        job.total = count
        key = jax.random.fold_in(jax.random.key(self.seed), COMPONENTS_STREAM + next(self._counter))
        samples = []
        for i in range(count):
            job.step(f"drawing sample {i + 1} of {count} of the region")
            one = posterior.region_samples(
                self.model, self.image, box, 1, jax.random.fold_in(key, i), temperature=temperature
            )
            samples.append(one[0])
            job.done = i + 1
        pcs = posterior.principal_components(np.stack(samples), k)
        with self._lock:
            self.components, self.components_box = pcs, box
        return self.state()["components"]

    # ------------------------------------------------------------------------- views
    def view(self, view: str, index: int = 0, sign: int = 0) -> np.ndarray:
        """float ``(H, W, 3)`` of a view: ``jpeg``, ``sample``, ``mean``, ``std`` or ``pc``
        (component ``index``; ``sign`` -1/0/+1: mean - / mean / mean + sqrt(lambda) v, 2: the
        direction v at full contrast, ``0.5 + 0.5 v / max|v|``)."""
        with self._lock:
            samples, pcs = list(self.samples), self.components
        if view == "jpeg":
            return self.image.pixels / np.float32(255.0)
        if view == "sample" and 0 <= index < len(samples):
            return samples[index]
        if view == "mean" and samples:
            return np.mean(samples, axis=0)
        if view == "std" and len(samples) >= 2:
            return np.std(samples, axis=0)
        if view == "pc" and pcs is not None and 0 <= index < len(pcs.variances):
            if sign == 2:
                v = pcs.directions[index]
                return 0.5 + 0.5 * v / max(float(np.abs(v).max()), 1e-12)
            return pcs.mean if sign == 0 else pcs.image(index, float(np.sign(sign)))
        raise KeyError(f"no {view} view (index {index}) yet")

    def picture(self, view: str, index: int = 0, sign: int = 0):
        """The upright 8-bit PIL image of a view (the std view as the decoder's grey map)."""
        data = self.view(view, index, sign)
        if view == "std":
            return pictures.std_picture(data, self.image.orientation)
        return pictures.to_picture(data, self.image.orientation, self.gray)

    def consistency(self, view: str, index: int = 0) -> dict:
        """In-bin fraction and RMSE (grey levels, libjpeg round trip) of a full-image view."""
        if view not in ("jpeg", "sample", "mean"):
            raise KeyError(f"no consistency figure for the {view} view")
        with self._lock:
            version = tuple(self.versions) if view == "mean" else None
            if view == "sample" and 0 <= index < len(self.versions):
                version = self.versions[index]
        cache_key = (view, index, version)
        if cache_key not in self._consistency:
            data = self.view(view, index)
            figures = jpeg.consistency(data, self.image, backend="libjpeg")
            self._consistency[cache_key] = {
                "in_bin": float(figures["in_bin"]),
                "rmse": float(figures["rmse"]),
            }
            for old in list(self._consistency)[:-32]:  # views change as samples do
                del self._consistency[old]
        return self._consistency[cache_key]
