"""Explanations on the raydojo Serve application.

    POST /v1/explain/{method}           cam | gradcam | lime | shap; body: PNG/JPEG upload (multipart
                                        field ``file`` or a raw image/* body) or JSON with one of
                                        image_base64 / array (28×28) / features ({name: value})
    POST /v1/models/{model}:explain     KServe-style: {"instances": [...]} -> {predictions, explanations}
    GET  /v1/explain/models             the served models: kind, classes, feature names, layers, methods

Query knobs: ``model``, ``target`` (class index or name; default the predicted class),
``samples``/``seed``/``segments`` (LIME, SHAP), ``layer`` (Grad-CAM), ``invert`` (dark-on-light images).
The ingress (this module's ``router``, torch-free) decodes and checks the input, the ExplainModel
deployment (dynamic batching; CUDA when present) predicts and attributes, the ingress renders
``overlay_png``. Client errors are 4xx with a message, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve import Application

from services.explain import images
from services.explain.metrics import ALL, BATCH_SIZE, EVALUATIONS, EXPLANATIONS, LATENCY, REJECTED
from services.serve.common import AppArgs, BadInput, Runtime, StartupError, handle

Method = Literal["cam", "gradcam", "lime", "shap"]
METHOD_NAMES: tuple[str, ...] = Method.__args__
DEFAULT_MODEL = {"image": "mnist", "tabular": "cancer"}
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_INSTANCES = 16
TOP_K = 10
# limits of the sampling knobs; services.explain.base.LIMITS holds the same numbers (a test checks)
SAMPLES, SEGMENTS = (16, 4096), (4, 196)


# ---- request / response models ----------------------------------------------------------------------

class ExplainRequest(BaseModel):
    """JSON body of POST /v1/explain/{method}: exactly one of the three inputs."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str | None = Field(None, description="A PNG or JPEG image, base64 (a data: URL prefix is fine)")
    array: list[list[float]] | None = Field(
        None, description="A 28x28 grayscale image, values in [0, 1], light strokes on black (as MNIST)")
    features: dict[str, float] | None = Field(
        None, description="One tabular row: feature name -> value (GET /v1/explain/models lists the names)")


class TopFeature(BaseModel):
    name: str = Field(description="Feature name, or pixel[row,col] of the 28x28 model input")
    value: float = Field(description="The input's value of this feature (pixel intensity in [0, 1])")
    attribution: float = Field(description="Its attribution towards the target class")
    condition: str | None = Field(None, description="LIME on rows: the feature's quartile condition")


class ExplainResponse(BaseModel):
    model: str
    method: str
    classes: list[str] = Field(description="Class names, in the order of probabilities")
    prediction: int = Field(description="Predicted class index")
    label: str = Field(description="Predicted class name")
    probabilities: list[float]
    target: int = Field(description="The class explained (default: the prediction)")
    target_label: str
    attributions: list[list[float]] | dict[str, float] = Field(
        description="Images: 28x28 map over the model input; rows: feature name -> attribution")
    top_features: list[TopFeature] = Field(description="Strongest evidence: top pixels, or rows' features by |attr|")
    overlay_png: str = Field(description="Base64 PNG: heatmap over the input image (its size), or a bar chart")
    base_value: float | None = Field(None, description="SHAP: f(baseline); attributions sum to f(x) - base_value")
    samples: int | None = Field(None, description="LIME / SHAP: model evaluations used")
    seed: int
    elapsed_ms: float = Field(description="Server time for this request")


class ModelInfo(BaseModel):
    kind: Literal["image", "tabular"]
    classes: list[str]
    features: list[str] = Field(description="Tabular: feature names in column order")
    layers: list[str] = Field(description="Images: conv layers Grad-CAM can use (last = default)")
    methods: list[str]


class ModelsResponse(BaseModel):
    models: dict[str, ModelInfo]


class KServeExplainRequest(BaseModel):
    """KServe v1 body: instances are 28x28 arrays or {"b64": "<PNG/JPEG>"} (image models), or
    {name: value} objects or value lists in column order (tabular models)."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(min_length=1, max_length=MAX_INSTANCES)


class KServeExplainResponse(BaseModel):
    predictions: list[int]
    explanations: list[ExplainResponse]


# ---- the ingress side -----------------------------------------------------------------------------

router = APIRouter(tags=["explain"])
_state: dict[str, Any] = {}


def _reject(reason: str, message: str, status: int = 422) -> BadInput:
    if "metrics" not in _state:
        from services.common.metrics import MetricSet

        _state["metrics"] = MetricSet([REJECTED], {})
    _state["metrics"].inc(REJECTED, 1, {"reason": reason})
    return BadInput(message, status)


async def _models() -> dict[str, dict]:
    """The deployment's model table, fetched once per ingress replica."""
    if "models" not in _state:
        _state["models"] = await handle("explain").info.remote()
    return _state["models"]


def _finite(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        raise _reject("nan", f"{what} contains NaN or infinite values; send finite numbers")


def _array_input(array: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise _reject("input", "array must be a 28x28 list of lists of numbers") from exc
    if x.shape != (28, 28):
        raise _reject("input", f"array must be 28x28 (got shape {'x'.join(map(str, x.shape)) or 'scalar'})")
    _finite(x, "array")
    if x.min() < 0 or x.max() > 1:
        raise _reject("input", f"array values must lie in [0, 1] (got {x.min():.4g}..{x.max():.4g})")
    return np.round(x * 255).astype(np.uint8), x


def _image_input(data: bytes, invert: bool) -> tuple[np.ndarray, np.ndarray]:
    try:
        gray = images.decode(data, Runtime.args.max_image_side)
    except images.ImageError as exc:
        raise _reject("image", str(exc), exc.status) from exc
    return gray, images.to_model_input(gray, invert)


def _features_input(features: Any) -> dict[str, float] | list[float]:
    if isinstance(features, dict):
        bad = [k for k, v in features.items() if not isinstance(v, int | float) or isinstance(v, bool)]
        if bad:
            raise _reject("input", f"feature values must be numbers (not: {', '.join(map(repr, bad[:5]))})")
        nan = [k for k, v in features.items() if not math.isfinite(v)]
        if nan:
            raise _reject("nan", f"features {', '.join(map(repr, nan[:5]))} are NaN or infinite; send finite numbers")
        return {k: float(v) for k, v in features.items()}
    try:
        row = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _reject("input", "a tabular instance must be an object {name: value} or a list of numbers") from exc
    if row.ndim != 1:
        raise _reject("input", "a tabular instance must be an object {name: value} or a flat list of numbers")
    _finite(row, "the row")
    return row.tolist()


async def _read_body(request: Request) -> tuple[str, Any]:
    """('image', (gray, x)) or ('tabular', features) from an upload, a raw image body or JSON."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _reject("too_large", f"request body is {declared} bytes; the limit is {MAX_BODY_BYTES}", 413)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _reject("too_large", f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}", 413)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    invert = request.query_params.get("invert", "").lower() in ("1", "true", "yes", "on")
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception as exc:  # noqa: BLE001 - starlette raises several parser errors
            raise _reject("body", f"could not parse the multipart body: {exc}") from exc
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _reject("body", "multipart upload needs a file field named 'file'")
        return "image", _image_input(await upload.read(), invert)
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return "image", _image_input(body, invert)
    if ctype not in ("application/json", ""):
        raise _reject("body", f"unsupported content type {ctype!r} (send multipart/form-data, image/png, "
                              f"image/jpeg or application/json)", 415)
    try:
        raw = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _reject("body", f"body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise _reject("body", "JSON body must be an object with one of image_base64, array, features")
    try:
        req = ExplainRequest.model_validate(raw)
    except ValidationError as exc:
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise _reject("body", msg) from exc
    given = [k for k in ("image_base64", "array", "features") if getattr(req, k) is not None]
    if len(given) != 1:
        raise _reject("body", f"send exactly one of image_base64, array, features (got {', '.join(given) or 'none'})")
    if req.features is not None:
        return "tabular", _features_input(req.features)
    if req.array is not None:
        return "image", _array_input(req.array)
    try:
        data = images.b64decode(req.image_base64)
    except images.ImageError as exc:
        raise _reject("image", str(exc), exc.status) from exc
    return "image", _image_input(data, invert)


async def _resolve_model(model: str | None, kind: str) -> str:
    models = await _models()
    name = model or DEFAULT_MODEL[kind]
    if name not in models:
        raise _reject("model", f"unknown model {name!r} (choose from {', '.join(models)})", 404)
    if models[name]["kind"] != kind:
        wants = "a 'features' object" if models[name]["kind"] == "tabular" else "an image or a 28x28 array"
        raise _reject("model", f"model {name!r} is a {models[name]['kind']} model: send {wants}")
    return name


def _build(result: dict, method: str, kind: str, inp: Any, seed: int, t0: float) -> ExplainResponse:
    attr = np.asarray(result["attributions"], dtype=np.float64)
    if kind == "image":
        gray, x = inp
        order = np.argsort(-attr.ravel(), kind="stable")[:TOP_K]
        top = [TopFeature(name=f"pixel[{i // 28},{i % 28}]", value=float(x.ravel()[i]), attribution=float(attr.ravel()[i]))
               for i in order]
        attributions: Any = attr.tolist()
        png = images.png_b64(images.overlay(gray, attr))
    else:
        names, row, conds = result["features"], result["row"], result.get("conditions")
        order = np.argsort(-np.abs(attr), kind="stable")[:TOP_K]
        top = [TopFeature(name=names[i], value=row[i], attribution=float(attr[i]),
                          condition=conds[i] if conds else None) for i in order]
        attributions = {n: float(a) for n, a in zip(names, attr, strict=True)}
        png = images.png_b64(images.bar_chart([names[i] for i in order], [float(attr[i]) for i in order]))
    classes = result["classes"]
    return ExplainResponse(
        model=result["model"], method=method, classes=classes, prediction=result["prediction"],
        label=classes[result["prediction"]], probabilities=result["probabilities"], target=result["target"],
        target_label=classes[result["target"]], attributions=attributions, top_features=top, overlay_png=png,
        base_value=result.get("base_value"), samples=result.get("samples"), seed=seed,
        elapsed_ms=round((time.perf_counter() - t0) * 1e3, 3))


def _job(model: str, method: str, kind: str, inp: Any, target: str | None, knobs: dict) -> dict:
    return {"model": model, "method": method, "input": inp[1] if kind == "image" else inp, "target": target, **knobs}


KNOB_DOCS = {
    "model": "Model to explain: mnist, fashion (images) or cancer (rows); default by input kind",
    "target": "Class to explain, index or name (default: the predicted class)",
    "samples": "LIME / SHAP: perturbed inputs evaluated",
    "seed": "LIME / SHAP: sampling seed (same seed, same answer)",
    "segments": "LIME / SHAP on images: SLIC superpixels requested",
    "layer": "Grad-CAM: conv layer (GET /v1/explain/models lists them; default the last)",
    "invert": "Invert the uploaded image (dark strokes on a light background)",
}
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ExplainRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
}}}


@router.get("/v1/explain/models", response_model=ModelsResponse, summary="The models that can be explained")
async def explain_models() -> ModelsResponse:
    return ModelsResponse(models=await _models())


@router.post("/v1/explain/{method}", response_model=ExplainResponse, openapi_extra=_BODY_DOC,
             summary="Explain one prediction (image upload, base64, 28x28 array, or a tabular row)")
async def explain(
    request: Request,
    method: Method,
    model: str | None = Query(None, description=KNOB_DOCS["model"]),
    target: str | None = Query(None, description=KNOB_DOCS["target"], max_length=64),
    samples: int = Query(1024, ge=SAMPLES[0], le=SAMPLES[1], description=KNOB_DOCS["samples"]),
    seed: int = Query(0, ge=0, le=2**31 - 1, description=KNOB_DOCS["seed"]),
    segments: int = Query(40, ge=SEGMENTS[0], le=SEGMENTS[1], description=KNOB_DOCS["segments"]),
    layer: str | None = Query(None, description=KNOB_DOCS["layer"], max_length=64),
    invert: bool = Query(False, description=KNOB_DOCS["invert"]),
) -> ExplainResponse:
    t0 = time.perf_counter()
    kind, inp = await _read_body(request)
    name = await _resolve_model(model, kind)
    knobs = {"samples": samples, "seed": seed, "segments": segments, "layer": layer}
    result = await handle("explain").explain.remote(_job(name, method, kind, inp, target, knobs))
    return _build(result, method, kind, inp, seed, t0)


@router.post("/v1/models/{model}:explain", response_model=KServeExplainResponse,
             summary="KServe-compatible explain: {instances} -> {predictions, explanations}")
async def kserve_explain(
    model: str,
    body: KServeExplainRequest = Body(...),
    method: Method = Query("shap", description="Explanation method"),
    target: str | None = Query(None, description=KNOB_DOCS["target"], max_length=64),
    samples: int = Query(1024, ge=SAMPLES[0], le=SAMPLES[1], description=KNOB_DOCS["samples"]),
    seed: int = Query(0, ge=0, le=2**31 - 1, description=KNOB_DOCS["seed"]),
    segments: int = Query(40, ge=SEGMENTS[0], le=SEGMENTS[1], description=KNOB_DOCS["segments"]),
    layer: str | None = Query(None, description=KNOB_DOCS["layer"], max_length=64),
    invert: bool = Query(False, description=KNOB_DOCS["invert"]),
) -> KServeExplainResponse:
    t0 = time.perf_counter()
    models = await _models()
    if model not in models:
        raise _reject("model", f"model {model!r} not found (choose from {', '.join(models)})", 404)
    kind = models[model]["kind"]
    inputs = []
    for i, inst in enumerate(body.instances):
        try:
            if kind == "tabular":
                inputs.append(_features_input(inst))
            elif isinstance(inst, dict) and set(inst) == {"b64"} and isinstance(inst["b64"], str):
                inputs.append(_image_input(images.b64decode(inst["b64"]), invert))
            elif isinstance(inst, list):
                inputs.append(_array_input(inst))
            else:
                raise _reject("input", "an image instance must be a 28x28 array or {\"b64\": \"<PNG or JPEG>\"}")
        except images.ImageError as exc:
            raise _reject("image", f"instances[{i}]: {exc}", exc.status) from exc
        except BadInput as exc:
            raise BadInput(f"instances[{i}]: {exc.message}", exc.status_code) from exc
    knobs = {"samples": samples, "seed": seed, "segments": segments, "layer": layer}
    h = handle("explain")
    results = await asyncio.gather(*(h.explain.remote(_job(model, method, kind, inp, target, knobs))
                                     for inp in inputs))
    explanations = [_build(r, method, kind, inp, seed, t0) for r, inp in zip(results, inputs, strict=True)]
    return KServeExplainResponse(predictions=[e.prediction for e in explanations], explanations=explanations)


# ---- the model deployment -------------------------------------------------------------------------

@serve.deployment(name="ExplainModel")
class ExplainModel:
    """Loads the trained models of a ``dojo explain train`` run-dir; predicts and attributes in batches."""

    def __init__(self, checkpoint: str, max_batch_size: int = 8, batch_wait_timeout_s: float = 0.005):
        import torch

        from services.common.metrics import MetricSet
        from services.explain.explainers import METHODS
        from services.explain.train import load_bundles

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.bundles = load_bundles(checkpoint, self.device)
        except FileNotFoundError as exc:
            raise StartupError(str(exc)) from exc
        self.methods = METHODS
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.metrics = MetricSet(ALL, {})

    def info(self) -> dict[str, dict]:
        out = {}
        for name, b in self.bundles.items():
            layers = list(b.net.conv_layers()) if hasattr(b.net, "conv_layers") else []
            out[name] = {"kind": b.kind, "classes": list(b.classes), "features": list(b.features), "layers": layers,
                         "methods": [m for m, e in self.methods.items() if e.applies_to(b)]}
        return out

    def _bad(self, reason: str, message: str, status: int = 422) -> BadInput:
        self.metrics.inc(REJECTED, 1, {"reason": reason})
        return BadInput(message, status)

    def _prepare(self, job: dict) -> dict:
        """Check a job against the model (BadInput otherwise); resolve the target and the row order."""
        bundle = self.bundles.get(job["model"])
        if bundle is None:
            raise self._bad("model", f"unknown model {job['model']!r} (choose from {', '.join(self.bundles)})", 404)
        explainer = self.methods.get(job["method"])
        if explainer is None:
            raise self._bad("method", f"unknown method {job['method']!r} (choose from {', '.join(self.methods)})", 404)
        if not explainer.applies_to(bundle):
            raise self._bad("method", f"method {job['method']!r} does not apply to {bundle.kind} model "
                                      f"{bundle.name!r} (use one of {', '.join(self.info()[bundle.name]['methods'])})")
        if job["method"] == "gradcam" and job.get("layer") is not None and job["layer"] not in bundle.net.conv_layers():
            raise self._bad("layer", f"unknown layer {job['layer']!r} for model {bundle.name!r} "
                                     f"(choose from {', '.join(bundle.net.conv_layers())})")
        x = job["input"]
        if bundle.kind == "tabular":
            names = list(bundle.features)
            if isinstance(x, dict):
                missing, unknown = [n for n in names if n not in x], [k for k in x if k not in names]
                if missing or unknown:
                    parts = ([f"missing features: {', '.join(missing)}"] if missing else []) + (
                        [f"unknown features: {', '.join(unknown[:10])}"] if unknown else [])
                    raise self._bad("features", "; ".join(parts) + f" (model {bundle.name!r} takes: {', '.join(names)})")
                x = [x[n] for n in names]
            if len(x) != len(names):
                raise self._bad("features", f"a row of model {bundle.name!r} has {len(names)} values "
                                            f"({', '.join(names)}); got {len(x)}")
        x = np.asarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise self._bad("nan", "the input contains NaN or infinite values")
        target = job.get("target")
        if target is not None:
            target = self._target(bundle, str(target))
        return {**job, "input": x, "target": target}

    def _target(self, bundle, target: str) -> int:
        classes = list(bundle.classes)
        if target.lstrip("-").isdigit() and target not in classes:
            t = int(target)
        else:
            lowered = [c.lower() for c in classes]
            t = lowered.index(target.lower()) if target.lower() in lowered else -1
        if not 0 <= t < len(classes):
            raise self._bad("target", f"target {target!r} is not a class of model {bundle.name!r} "
                                      f"(0..{len(classes) - 1} or one of: {', '.join(classes)})")
        return t

    async def explain(self, job: dict) -> dict:
        prepared = self._prepare(job)
        result = await self._batched(prepared)
        if "error" in result:
            raise BadInput(result["error"], 422)
        return result

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _batched(self, jobs: list[dict]) -> list[dict]:
        return await asyncio.get_running_loop().run_in_executor(None, self._compute, jobs)

    def _compute(self, jobs: list[dict]) -> list[dict]:
        from services.explain.base import ExplainError, Options

        out: list[dict | None] = [None] * len(jobs)
        groups: dict[tuple, list[int]] = {}
        for i, j in enumerate(jobs):
            groups.setdefault((j["model"], j["method"], j["samples"], j["seed"], j["segments"], j["layer"]), []).append(i)
        for (model, method, samples, seed, segments, layer), idx in groups.items():
            bundle, tags = self.bundles[model], {"model": model, "method": method}
            x = np.stack([jobs[i]["input"] for i in idx])  # (B, 28, 28) or (B, F)
            t0 = time.perf_counter()
            probs = bundle.predict_proba(x)  # (B, K)
            preds = probs.argmax(1)
            targets = np.array([p if jobs[i]["target"] is None else jobs[i]["target"] for i, p in zip(idx, preds, strict=True)])
            try:
                ex = self.methods[method].explain(bundle, x, targets, Options(samples, seed, layer, segments))
            except ExplainError as exc:
                for i in idx:
                    out[i] = {"error": str(exc)}
                continue
            self.metrics.observe(LATENCY, (time.perf_counter() - t0) * 1e3, tags)
            self.metrics.observe(BATCH_SIZE, len(idx), tags)
            self.metrics.inc(EXPLANATIONS, len(idx), tags)
            self.metrics.inc(EVALUATIONS, ex.evaluations, tags)
            for k, i in enumerate(idx):
                out[i] = {
                    "model": model, "classes": list(bundle.classes), "prediction": int(preds[k]),
                    "probabilities": probs[k].tolist(), "target": int(targets[k]),
                    "attributions": ex.attributions[k], "features": list(bundle.features),
                    "row": x[k].tolist() if bundle.kind == "tabular" else None,
                    "conditions": ex.conditions[k] if ex.conditions else None,
                    "base_value": float(ex.base_values[k]) if ex.base_values is not None else None,
                    "samples": samples if method in ("lime", "shap") else None,
                }
        return out  # type: ignore[return-value]


def bind(args: AppArgs) -> Application:
    """The ExplainModel deployment on the run-dir ``explain_checkpoint`` (StartupError when it has none)."""
    from services.common import checkpoint
    from services.common.rundir import RunDir

    location = args.checkpoint_path(args.explain_checkpoint)
    try:
        steps = checkpoint.list_steps(RunDir(location))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for unreachable stores
        raise StartupError(f"explain checkpoint {location}: {exc}") from exc
    if not steps:
        raise StartupError(f"no explain checkpoint in {location}: create it with "
                           f"`dojo explain train --run-dir {location}` (or point explain_checkpoint at "
                           f"deploy/models/explain, the committed one)")
    return ExplainModel.bind(location)
