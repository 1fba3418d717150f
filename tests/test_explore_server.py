"""The explorer's HTTP API (jpeg_jax.explore), in-process with Starlette's test client."""

import io
import re
import socket
import subprocess
import sys
import time
from importlib import resources

import jax
import numpy as np
import pytest
from jpeg_helpers import photo, pillow_jpeg
from model_helpers import random_params
from PIL import Image
from starlette.testclient import TestClient

from jpeg_jax import decode, export, jpeg, pictures, sampling
from jpeg_jax.explore import server
from jpeg_jax.models import Generator

GENERATOR = dict(num_feat=8, num_block=1, num_grow_ch=4, noise=True, film=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    params = random_params(Generator(**GENERATOR), seed=0)
    return export.save(tmp_path_factory.mktemp("export") / "tiny", GENERATOR, params)


@pytest.fixture(scope="module")
def client(checkpoint):
    app = server.create_app(decode.load_model(checkpoint), max_megapixels=1.0)
    with TestClient(app) as c:
        yield c


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _jpeg(size=(48, 80), quality=30, **kwargs):
    crop = (slice(100, 100 + size[0]), slice(150, 150 + size[1]))
    return pillow_jpeg(photo("astronaut", crop), quality, "4:2:0", **kwargs)


def _wait(client, job):
    deadline = time.monotonic() + 300
    while job["status"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}").json()
    assert job["status"] == "done", job
    assert job["done"] == job["total"]
    return job


def _png(client, sid, **query):
    response = client.get(f"/api/sessions/{sid}/image", params=query)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def _open(client, data, name="photo.jpg"):
    response = client.post(f"/api/open?name={name}", content=data)
    assert response.status_code == 200, response.text
    return response.json()


def test_page_and_its_files_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    referenced = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert "/static/explore.js" in referenced and "/static/explore.css" in referenced
    for path in referenced:
        assert path.startswith("/static/"), path  # nothing from another host
        assert client.get(path).status_code == 200
    for item in (resources.files("jpeg_jax.explore") / "static").iterdir():
        assert not re.search(r"https?:|//[a-z]", item.read_text()), item.name


def _bad_files():
    good = _jpeg()
    cmyk = io.BytesIO()
    Image.fromarray(photo("astronaut", (slice(0, 32), slice(0, 32)))).convert("CMYK").save(
        cmyk, "JPEG"
    )
    big = pillow_jpeg(np.zeros((1200, 1000, 3), np.uint8), 50, "4:2:0")  # 1.2 megapixels
    return {
        "empty.jpg": b"",
        "notes.txt": b"hello, not an image\n",
        "truncated.jpg": good[: len(good) // 2],
        "cmyk.jpg": cmyk.getvalue(),
        "big.jpg": big,
    }


@pytest.mark.parametrize("name", list(_bad_files()))
def test_a_bad_file_gets_the_decoders_one_line_message(client, name):
    data = _bad_files()[name]
    response = client.post(f"/api/open?name={name}", content=data)
    assert response.status_code == 400
    # Reference: the very message jpeg-jax-decode prints after the file's name.
    with pytest.raises(decode.InputError) as e:
        decode.read_checked(data, 1.0)
    assert response.json()["error"] == f"{name}: {decode.describe_error(e.value)}"
    assert "\n" not in response.json()["error"]


def test_samples_temperature_views_and_download(client, checkpoint):
    data = _jpeg(exif=_exif(6))  # stored 48 x 80, shown 80 x 48
    info = _open(client, data)
    sid, image = info["session"], jpeg.read_jpeg(data)
    assert info["size"] == [80, 48]
    job = client.post(f"/api/sessions/{sid}/draw", json={"count": 3, "temperature": 0.7}).json()
    _wait(client, job)
    state = client.get(f"/api/sessions/{sid}").json()
    assert len(state["versions"]) == 3 and state["temperature"] == 0.7
    for i in range(3):  # sample i: restore() with key fold_in(key(seed), i), shown upright
        key = jax.random.fold_in(jax.random.key(state["seed"]), i)
        ref = sampling.restore(checkpoint, image, 1, key, temperature=0.7).samples[0]
        want = np.asarray(pictures.to_picture(ref, 6, gray=False))
        np.testing.assert_array_equal(_png(client, sid, view="sample", index=i), want)
    assert _png(client, sid, view="jpeg").shape == (80, 48, 3)
    assert _png(client, sid, view="mean").shape == (80, 48, 3)
    assert _png(client, sid, view="std").shape == (80, 48)
    figures = client.get(f"/api/sessions/{sid}/consistency", params={"view": "sample"}).json()
    key = jax.random.fold_in(jax.random.key(state["seed"]), 0)
    ref = jpeg.consistency(
        sampling.restore(checkpoint, image, 1, key, temperature=0.7).samples[0],
        image,
        backend="libjpeg",
    )
    assert figures == pytest.approx({"rmse": float(ref["rmse"]), "in_bin": float(ref["in_bin"])})
    download = client.get(f"/api/sessions/{sid}/image?view=sample&index=1&download=1")
    assert 'filename="photo_sample2.png"' in download.headers["content-disposition"]
    # Temperature 0: the deterministic path, every sample the same; more samples are added.
    job = client.post(f"/api/sessions/{sid}/draw", json={"count": 4, "temperature": 0}).json()
    _wait(client, job)
    views = [_png(client, sid, view="sample", index=i) for i in range(4)]
    assert all(np.array_equal(v, views[0]) for v in views)
    assert _png(client, sid, view="std").max() == 0


@pytest.mark.parametrize("project", [False, True])
def test_redraw_changes_only_the_region(client, project):
    info = _open(client, _jpeg(size=(64, 96), exif=_exif(3)))
    sid = info["session"]
    body = {"count": 2, "temperature": 1.0, "project": project}
    _wait(client, client.post(f"/api/sessions/{sid}/draw", json=body).json())
    snapped = client.post(f"/api/sessions/{sid}/snap", json={"box": [20, 10, 50, 30]}).json()
    # Rotated 180 degrees: shown columns 20..50 / rows 10..30 are stored 46..76 / 34..54,
    # on the grid 32..80 / 32..64, shown 16..64 / 0..32.
    assert snapped["box"] == [16, 0, 64, 32]
    before = _png(client, sid, view="sample", index=1)
    job = client.post(
        f"/api/sessions/{sid}/redraw", json={"index": 1, "box": [20, 10, 50, 30]}
    ).json()
    assert _wait(client, job)["result"]["box"] == [16, 0, 64, 32]
    after = _png(client, sid, view="sample", index=1)
    outside = np.ones(after.shape[:2], bool)
    outside[0:32, 16:64] = False
    np.testing.assert_array_equal(after[outside], before[outside])
    assert np.abs(after[4:28, 20:60].astype(int) - before[4:28, 20:60]).max() > 10
    figures = client.get(f"/api/sessions/{sid}/consistency?view=sample&index=1").json()
    assert (figures["in_bin"] == 1.0) == project


def test_principal_components_of_a_region(client):
    sid = _open(client, _jpeg())["session"]
    _wait(client, client.post(f"/api/sessions/{sid}/draw", json={"count": 1}).json())
    body = {"box": [16, 16, 48, 48], "count": 5, "k": 2}
    result = _wait(client, client.post(f"/api/sessions/{sid}/components", json=body).json())
    pcs = result["result"]
    assert pcs["box"] == [16, 16, 48, 48] and len(pcs["explained"]) == 2
    assert pcs["variance"][0] >= pcs["variance"][1] > 0
    assert 0 < sum(pcs["explained"]) <= 1
    mean = _png(client, sid, view="pc", index=0, sign=0).astype(int)
    plus = _png(client, sid, view="pc", index=0, sign=1).astype(int)
    minus = _png(client, sid, view="pc", index=0, sign=-1).astype(int)
    assert mean.shape == (32, 32, 3) and np.abs(plus - minus).max() > 5
    # mean +- sqrt(lambda) v are symmetric about the mean (up to clipping and rounding).
    inside = (plus > 2) & (plus < 253) & (minus > 2) & (minus < 253)
    assert np.abs((plus + minus) / 2 - mean)[inside].max() <= 1.0


@pytest.mark.parametrize(
    "path,body,status,words",
    [
        ("/api/sessions/nope", None, 404, "no longer open"),
        ("/api/jobs/nope", None, 404, "no such job"),
        ("draw", {"count": 0}, 400, "between 1 and 64"),
        ("draw", {"count": 2, "temperature": -1}, 200, "temperature must be"),
        ("snap", {"box": [500, 500, 600, 600]}, 400, "no pixel"),
        ("components", {"box": [0, 0, 16, 16], "count": 3, "k": 3}, 400, "components"),
    ],
)
def test_api_errors(client, path, body, status, words):
    sid = _open(client, _jpeg())["session"]
    if not path.startswith("/"):
        path = f"/api/sessions/{sid}/{path}"
    response = client.post(path, json=body) if body is not None else client.get(path)
    assert response.status_code == status, response.text
    if status == 200:  # a job that fails: its error is the message
        job = response.json()
        while job["status"] == "running":
            time.sleep(0.05)
            job = client.get(f"/api/jobs/{job['id']}").json()
        assert job["status"] == "failed" and words in job["error"]
    else:
        assert words in response.json()["error"]


def test_cli_refuses_a_bad_checkpoint_and_a_busy_port(tmp_path, checkpoint, capsys):
    assert server.main(["--checkpoint", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jpeg-jax-explore: error: checkpoint") and "no such export" in err
    assert len(err.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert server.main(["--checkpoint", str(checkpoint), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and "--port" in err
    for bad in ("70000", "http"):
        with pytest.raises(SystemExit) as e:
            server.main(["--checkpoint", str(checkpoint), "--port", bad])
        assert e.value.code == 2


def test_on_loopback_only_requests_to_loopback_names_are_answered(checkpoint):
    app = server.create_app(decode.load_model(checkpoint), allowed_hosts=["127.0.0.1", "localhost"])
    for host, status in [("127.0.0.1:8765", 200), ("localhost", 200), ("evil.example", 400)]:
        with TestClient(app, base_url=f"http://{host}") as c:
            assert c.get("/").status_code == status, host


def test_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "jpeg_jax.explore", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and "--checkpoint" in result.stdout, result.stderr
