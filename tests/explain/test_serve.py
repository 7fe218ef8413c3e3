"""The explain endpoints over real HTTP on a real local Ray Serve, with the committed checkpoint."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from services.explain import images
from services.explain.models import image_data, tabular_data
from services.serve.app import build_app
from services.serve.common import AppArgs, StartupError
from tests.conftest import REPO
from tests.explain.test_methods import brute_force_shapley

SNAPSHOT = REPO / "tests" / "explain" / "openapi_explain.json"
METHODS = ("cam", "gradcam", "lime", "shap")
MODELS = ("mnist", "fashion", "cancer")


def png(arr: np.ndarray, size: tuple[int, int] | None = None, fmt: str = "PNG") -> bytes:
    img = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8))
    if size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def sample_image(name: str, i: int = 0) -> np.ndarray:
    return image_data(name, "test")[0][i]


def cancer_row(i: int = 0) -> dict[str, float]:
    x, _, names = tabular_data("test")
    return {n: float(v) for n, v in zip(names, x[i], strict=True)}


def post(url: str, path: str, **kw) -> httpx.Response:
    return httpx.post(f"{url}{path}", timeout=120, **kw)


def decoded_png(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    assert img.format == "PNG"
    return img


# ---- every method x every model ----------------------------------------------------------------------

def request_for(model: str, form: str) -> tuple[dict, tuple[int, int], np.ndarray | None]:
    """(httpx kwargs, expected overlay size, model input) for one way of sending an input."""
    if model == "cancer":
        return {"json": {"features": cancer_row(3)}}, None, None
    x = sample_image(model, 1)
    if form == "upload":
        data = png(x, (56, 56))
        return {"files": {"file": ("digit.png", data, "image/png")}}, (56, 56), images.to_model_input(images.decode(data, 512))
    if form == "base64":
        data = png(x, (40, 30), fmt="JPEG")
        return ({"json": {"image_base64": "data:image/jpeg;base64," + base64.b64encode(data).decode()}}, (40, 30),
                images.to_model_input(images.decode(data, 512)))
    return {"json": {"array": x.tolist()}}, (28, 28), x


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_every_model_over_http(url, bundles, method, model):
    form = {"cam": "upload", "gradcam": "base64", "lime": "array", "shap": "upload"}[method]
    kw, size, x = request_for(model, form)
    r = post(url, f"/v1/explain/{method}?model={model}&samples=256", **kw)
    b = bundles[model]
    if method in ("cam", "gradcam") and model == "cancer":
        assert r.status_code == 422 and "does not apply" in r.json()["detail"], r.text
        return
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == method and body["model"] == model and body["seed"] == 0
    probs = np.array(body["probabilities"])
    assert abs(probs.sum() - 1) < 1e-4 and body["prediction"] == int(probs.argmax()) == body["target"]
    assert body["label"] == b.classes[body["prediction"]] and 0 < body["elapsed_ms"] < 120_000
    overlay = decoded_png(body["overlay_png"])
    if b.kind == "image":
        assert overlay.size == size  # the heatmap lies over the input, at the input's size
        attr = np.array(body["attributions"])
        assert attr.shape == (28, 28) and np.isfinite(attr).all() and np.abs(attr).max() > 0
        np.testing.assert_allclose(probs, b.predict_proba(x[None])[0], atol=1e-4)  # the same model input
        top = body["top_features"][0]
        r_, c_ = map(int, re.match(r"pixel\[(\d+),(\d+)\]", top["name"]).groups())
        assert top["attribution"] == pytest.approx(attr[r_, c_]) and top["attribution"] == pytest.approx(attr.max())
    else:
        assert set(body["attributions"]) == set(b.features) and overlay.size[0] > 100
        tops = [abs(t["attribution"]) for t in body["top_features"]]
        assert tops == sorted(tops, reverse=True)
        if method == "lime":
            assert all(t["condition"] and t["name"] in t["condition"] for t in body["top_features"])
    if method == "shap":
        total = np.sum(body["attributions"] if b.kind == "image" else list(body["attributions"].values()))
        assert abs(total - (probs[body["target"]] - body["base_value"])) < 1e-3


def test_served_shap_values_are_exact_shapley_values(url, bundles):
    b = bundles["cancer"]
    for i in range(4):
        row = cancer_row(i)
        body = post(url, "/v1/explain/shap", json={"features": row}).json()  # default samples cover all 2^10 coalitions
        t = body["target"]
        x = np.array([row[n] for n in b.features], dtype=np.float32)
        exact = brute_force_shapley(lambda z, x=x, t=t: b.predict_proba(np.where(z.astype(bool), x, b.baseline))[:, t],
                                    len(b.features))
        served = np.array([body["attributions"][n] for n in b.features])
        assert np.linalg.norm(served - exact) <= 0.02 * np.linalg.norm(exact)
        big = np.abs(exact) > 0.05 * np.abs(exact).max()
        np.testing.assert_allclose(served[big], exact[big], rtol=0.02)
        fx, fb = b.predict_proba(x[None])[0, t], b.predict_proba(b.baseline[None])[0, t]
        assert abs(served.sum() - (fx - fb)) < 1e-3 and abs(body["base_value"] - fb) < 1e-5


def test_target_explains_another_class(url):
    arr = {"array": sample_image("mnist", 0).tolist()}
    own = post(url, "/v1/explain/gradcam", json=arr).json()
    other = post(url, "/v1/explain/cam?target=3", json=arr).json()
    assert own["prediction"] == other["prediction"] == 7 and other["target"] == 3 and other["target_label"] == "3"
    cam7 = post(url, "/v1/explain/cam", json=arr).json()
    assert not np.allclose(cam7["attributions"], other["attributions"])
    named = post(url, "/v1/explain/gradcam?model=fashion&target=Trouser",
                 json={"array": sample_image("fashion", 0).tolist()}).json()
    assert named["target"] == 1 and named["target_label"] == "Trouser"
    benign = post(url, "/v1/explain/lime?target=benign", json={"features": cancer_row(0)}).json()
    assert benign["target_label"] == "benign"


def test_same_seed_same_answer_over_http(url):
    arr = {"array": sample_image("mnist", 2).tolist()}
    a = post(url, "/v1/explain/lime?samples=128&seed=5", json=arr).json()["attributions"]
    b = post(url, "/v1/explain/lime?samples=128&seed=5", json=arr).json()["attributions"]
    c = post(url, "/v1/explain/lime?samples=128&seed=6", json=arr).json()["attributions"]
    assert a == b and a != c


def test_raw_image_body_and_invert(url):
    x = sample_image("mnist", 0)
    plain = post(url, "/v1/explain/cam", content=png(x), headers={"content-type": "image/png"}).json()
    inverted = post(url, "/v1/explain/cam?invert=true", content=png(1 - x), headers={"content-type": "image/png"}).json()
    assert plain["prediction"] == inverted["prediction"] == 7
    np.testing.assert_allclose(plain["probabilities"], inverted["probabilities"], atol=1e-3)


def test_kserve_explain(url, bundles):
    x0, x1 = sample_image("mnist", 0), sample_image("mnist", 1)
    r = post(url, "/v1/models/mnist:explain?method=gradcam",
             json={"instances": [x0.tolist(), {"b64": base64.b64encode(png(x1)).decode()}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == [7, 2] and [e["prediction"] for e in body["explanations"]] == [7, 2]
    assert all(e["method"] == "gradcam" and decoded_png(e["overlay_png"]).size == (28, 28) for e in body["explanations"])
    row = cancer_row(1)
    r = post(url, "/v1/models/cancer:explain", json={"instances": [row, [row[n] for n in bundles["cancer"].features]]})
    assert r.status_code == 200, r.text
    e1, e2 = r.json()["explanations"]
    assert e1["method"] == "shap" and e1["attributions"] == pytest.approx(e2["attributions"])


def test_models_listing(url):
    models = httpx.get(f"{url}/v1/explain/models", timeout=60).json()["models"]
    assert set(models) == set(MODELS)
    assert models["cancer"]["methods"] == ["lime", "shap"] and models["mnist"]["methods"] == list(METHODS)
    assert models["mnist"]["layers"][-1] == "conv5" and models["cancer"]["features"][0] == "mean radius"


# ---- bad input: 4xx with a message, never a 500 ----------------------------------------------------

def _big_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="GIF")
    return buf.getvalue()


ROW = cancer_row(0)
ARR = np.zeros((28, 28)).tolist()
BAD = {
    "non-image bytes": ("/v1/explain/cam", {"files": {"file": ("x.png", b"hello, not an image", "image/png")}}, 415, "decode"),
    "4000x4000 image": ("/v1/explain/cam", {"files": {"file": ("big.png", _big_png(4000), "image/png")}}, 413, "4000x4000"),
    "NaN features": ("/v1/explain/shap", {"content": json.dumps({"features": {**ROW, "mean radius": float("nan")}}),
                                          "headers": {"content-type": "application/json"}}, 422, "NaN"),
    "unknown method": ("/v1/explain/integrated-gradients", {"json": {"array": ARR}}, 422, "cam"),
    "missing features": ("/v1/explain/shap", {"json": {"features": {k: v for k, v in ROW.items() if k != "mean area"}}},
                         422, "missing features: mean area"),
    "unknown feature": ("/v1/explain/shap", {"json": {"features": {**ROW, "colour": 1.0}}}, 422, "unknown features: colour"),
    "unknown target class": ("/v1/explain/cam?target=12", {"json": {"array": ARR}}, 422, "not a class"),
    "unknown target name": ("/v1/explain/lime?target=banana", {"json": {"features": ROW}}, 422, "malignant"),
    "unknown model": ("/v1/explain/cam?model=cifar10", {"json": {"array": ARR}}, 404, "choose from"),
    "image for a tabular model": ("/v1/explain/shap?model=cancer", {"json": {"array": ARR}}, 422, "features"),
    "row for an image model": ("/v1/explain/shap?model=mnist", {"json": {"features": ROW}}, 422, "image"),
    "bad base64": ("/v1/explain/cam", {"json": {"image_base64": "!!!not base64"}}, 422, "base64"),
    "wrong array shape": ("/v1/explain/cam", {"json": {"array": [[0.0] * 27] * 28}}, 422, "28x28"),
    "ragged array": ("/v1/explain/cam", {"json": {"array": [[0.0] * 28, [0.0]]}}, 422, "28x28"),
    "array out of range": ("/v1/explain/cam", {"json": {"array": np.full((28, 28), 255.0).tolist()}}, 422, "[0, 1]"),
    "infinite array": ("/v1/explain/cam", {"content": json.dumps({"array": np.full((28, 28), np.inf).tolist()}),
                                           "headers": {"content-type": "application/json"}}, 422, "infinite"),
    "string feature": ("/v1/explain/shap", {"json": {"features": {**ROW, "mean area": "big"}}}, 422, "mean area"),
    "samples over the limit": ("/v1/explain/lime?samples=1000000", {"json": {"array": ARR}}, 422, "samples"),
    "unknown layer": ("/v1/explain/gradcam?layer=fc", {"json": {"array": ARR}}, 422, "conv5"),
    "two inputs": ("/v1/explain/cam", {"json": {"array": ARR, "features": ROW}}, 422, "exactly one"),
    "no input": ("/v1/explain/cam", {"json": {}}, 422, "exactly one"),
    "unknown body field": ("/v1/explain/cam", {"json": {"pixels": ARR}}, 422, "pixels"),
    "invalid JSON": ("/v1/explain/cam", {"content": b"{nope", "headers": {"content-type": "application/json"}}, 422, "JSON"),
    "GIF upload": ("/v1/explain/cam", {"files": {"file": ("a.gif", _gif(), "image/gif")}}, 415, "GIF"),
    "multipart without file": ("/v1/explain/cam", {"files": {"image": ("a.png", b"x", "image/png")}}, 422, "'file'"),
    "text body": ("/v1/explain/cam", {"content": b"7", "headers": {"content-type": "text/plain"}}, 415, "content type"),
    "body over 8 MiB": ("/v1/explain/cam", {"content": b"\0" * (9 * 2**20), "headers": {"content-type": "image/png"}},
                        413, "limit"),
    "kserve unknown model": ("/v1/models/resnet:explain", {"json": {"instances": [ARR]}}, 404, "not found"),
    "kserve too many instances": ("/v1/models/mnist:explain", {"json": {"instances": [ARR] * 17}}, 422, "instances"),
    "kserve bad instance": ("/v1/models/mnist:explain", {"json": {"instances": [ARR, {"url": "x"}]}}, 422, "instances[1]"),
    "kserve short row": ("/v1/models/cancer:explain", {"json": {"instances": [[1.0, 2.0]]}}, 422, "got 2"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_a_4xx_with_a_message(url, case):
    path, kw, status, words = BAD[case]
    r = post(url, path, **kw)
    assert r.status_code == status, f"{case}: {r.status_code} {r.text[:300]}"
    detail = r.json()["detail"]
    assert isinstance(detail, str) and words in detail, f"{case}: {detail}"


def test_missing_checkpoint_is_a_clear_startup_error(tmp_path):
    with pytest.raises(StartupError, match="dojo explain train --run-dir .*nowhere"):
        build_app(AppArgs(explain_checkpoint=str(tmp_path / "nowhere")).model_dump())


# ---- contract: OpenAPI and metrics -----------------------------------------------------------------

def explain_openapi(spec: dict) -> dict:
    """The explain paths of the OpenAPI document and every schema they reference."""
    paths = {p: v for p, v in spec["paths"].items() if p.startswith(("/v1/explain", "/v1/models/"))}
    schemas, todo = {}, re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(paths))
    while todo:
        name = todo.pop()
        if name not in schemas:
            schemas[name] = spec["components"]["schemas"][name]
            todo += re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(schemas[name]))
    return {"paths": paths, "schemas": dict(sorted(schemas.items()))}


def test_openapi_is_pinned(url):
    got = explain_openapi(httpx.get(f"{url}/openapi.json", timeout=60).json())
    if os.environ.get("DOJO_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(SNAPSHOT.read_text()), "explain API changed: DOJO_UPDATE_SNAPSHOTS=1 pytest tests/explain"


def test_explain_metrics_are_exported(url):
    import ray

    post(url, "/v1/explain/cam", json={"array": ARR})
    post(url, "/v1/explain/cam?target=99", json={"array": ARR})
    port = ray._private.worker.global_worker.node.metrics_export_port
    deadline, text = time.time() + 60, ""
    wanted = ("ray_dojo_explain_explanations_total", "ray_dojo_explain_latency_ms_bucket",
              "ray_dojo_explain_model_evaluations_total", "ray_dojo_explain_rejected_total")
    while time.time() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if all(w in text for w in wanted):
            break
        time.sleep(2)
    for w in wanted:
        assert w in text, f"{w} not exported"
    assert re.search(r'ray_dojo_explain_explanations_total\{[^}]*method="cam"[^}]*model="mnist"', text) or \
        re.search(r'ray_dojo_explain_explanations_total\{[^}]*model="mnist"', text)
