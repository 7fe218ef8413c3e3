"""/v1/embed and /v1/similar over real HTTP with the committed triplet checkpoint; bad input → 4xx;
the pinned OpenAPI part; a missing checkpoint is a clear startup error."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess

import httpx
import numpy as np
import pytest
from PIL import Image
from ray import serve

from services.common.data import load
from services.serve.app import build_app
from services.serve.common import AppArgs, StartupError
from tests.conftest import REPO
from tests.metric.openapi_part import SNAPSHOT, part

CKPT = str(REPO / "deploy" / "models" / "metric" / "triplet-mnist")


@pytest.fixture(scope="module")
def url(ray_local):
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app({"embed_checkpoint": CKPT, "api_keys_env": "DOJO_TEST_NO_KEYS"}), name="metric",
              route_prefix="/metric")
    yield "http://127.0.0.1:8000/metric"
    serve.delete("metric")


def png_b64(a: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray((a * 255).astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_embed_and_similar(url):
    x, y = load("mnist", "test")
    r = httpx.post(f"{url}/v1/embed", json={"pixels": x[7].tolist()}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dim"] == 32 and abs(np.linalg.norm(body["embedding"]) - 1) < 1e-4
    assert body["nearest_class"] == y[7] and not body["is_anomaly"]
    # the same image as PNG (and upscaled to 56×56) lands next to itself: item 7 of the test-set index
    big = np.kron(x[7], np.ones((2, 2), dtype=np.float32))
    r = httpx.post(f"{url}/v1/similar", json={"image_base64": png_b64(big), "k": 10}, timeout=60)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["index_split"] == "test" and s["index_size"] == 10_000 and len(s["neighbours"]) == 10
    r = httpx.post(f"{url}/v1/similar", json={"image_base64": png_b64(x[7]), "k": 10}, timeout=60).json()
    first = r["neighbours"][0]
    assert first["item"] == 7 and first["distance"] < 0.02 and first["label"] == y[7]
    d = [n["distance"] for n in r["neighbours"]]
    assert d == sorted(d)
    assert sum(n["label"] == y[7] for n in r["neighbours"]) >= 9
    # anomaly score: noise is far from every class centroid, a digit is not
    noise = np.random.default_rng(0).random((28, 28)).tolist()
    a = httpx.post(f"{url}/v1/embed", json={"pixels": noise}, timeout=60).json()
    assert a["anomaly_score"] > body["anomaly_score"] and a["is_anomaly"]


@pytest.mark.parametrize(("payload", "message"), [
    ({"image_base64": base64.b64encode(b"this is not an image").decode()}, "readable image"),
    ({"image_base64": "%%%"}, "base64"),
    ({"pixels": [[0.0] * 28] * 27}, "28 rows"),
    ({"pixels": [[0.0] * 28] * 28, "image_base64": "AAAA"}, "exactly one"),
    ({}, "exactly one"),
    ({"pixels": [[-1.0] * 28] * 28}, "[0, 1]"),
])
def test_bad_images_get_422_with_message(url, payload, message):
    for route in ("/v1/embed", "/v1/similar"):
        r = httpx.post(f"{url}{route}", json=payload, timeout=60)
        assert r.status_code == 422 and message in r.json()["detail"], (route, r.text)


def test_bad_requests_are_4xx(url):
    r = httpx.post(f"{url}/v1/similar", json={"pixels": [[0.0] * 28] * 28, "k": 0}, timeout=60)
    assert r.status_code == 422 and "k" in r.json()["detail"]
    r = httpx.post(f"{url}/v1/embed", content=b"\x89PNG raw bytes", timeout=60)
    assert r.status_code == 422
    huge = png_b64(np.zeros((600, 600), dtype=np.float32))
    r = httpx.post(f"{url}/v1/embed", json={"image_base64": huge}, timeout=60)
    assert r.status_code == 422 and "largest side" in r.json()["detail"]


def test_openapi_part_is_pinned(url):
    spec = httpx.get(f"{url}/openapi.json", timeout=60).json()
    assert part(spec) == json.loads(SNAPSHOT.read_text()), "run: python -m tests.metric.openapi_part"


def test_missing_checkpoint_is_a_startup_error(tmp_path):
    from services.metric.serve import bind

    with pytest.raises(StartupError, match=r"model.pt is missing.*dojo metric train"):
        bind(AppArgs(embed_checkpoint=str(tmp_path / "nothing")))


def doc_curl_lines() -> list[str]:
    lines = []
    for doc in ("docs/metric.md", "docs/gcn.md", "README.md"):
        for block in re.findall(r"```bash\n(.*?)```", (REPO / doc).read_text(), re.S):
            lines += [ln.strip() for ln in block.splitlines()
                      if ln.strip().startswith("curl ") and re.search(r"/v1/(embed|similar|graph/classify)", ln)]
    return lines


def test_doc_curl_examples(url):
    """The curl lines for these routes in docs/metric.md, docs/gcn.md and README.md, run as written
    against this test's app (only the host/prefix is rewritten)."""
    lines = doc_curl_lines()
    assert len(lines) >= 3
    answers = {}
    for line in lines:
        cmd = line.replace("http://127.0.0.1:8000", url)
        p = subprocess.run(["bash", "-c", cmd + " -w '\\n%{http_code}'"], capture_output=True, text=True, cwd=REPO,
                           timeout=120)
        body, code = p.stdout.rsplit("\n", 1)
        assert p.returncode == 0 and code == "200", (line, p.stdout[-500:], p.stderr[-500:])
        answers[re.search(r"/v1/[a-z/]+", line).group(0)] = json.loads(body)
    assert answers["/v1/embed"]["nearest_class"] == 7 and answers["/v1/embed"]["dim"] == 32
    assert answers["/v1/similar"]["neighbours"][0]["item"] == 0 and answers["/v1/similar"]["neighbours"][0]["label"] == 7
    assert answers["/v1/graph/classify"]["labels"] == [0, 0, 0, 1, 1, 1]
