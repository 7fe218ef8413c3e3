"""Speech to text in the raydojo Serve application.

    POST /v1/asr/transcribe  (WAV body or multipart "file"; ?decoder=greedy|beam&grammar=all|digits|commands)
      ingress route: read the body within the size limit, decode and resample the WAV (4xx on bad input)
        ──handle("asr").transcribe──► ASRModel replica: log-mel ─► @serve.batch network forward ─► decoding

The ingress validates everything a client can get wrong, so the model replicas only see clean
16 kHz audio; the network forward is dynamically batched across concurrent requests.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import os
import time
from typing import Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from ray import serve

from services.asr.audio import SAMPLE_RATE, AudioError, load_audio
from services.asr.metrics import ALL, AUDIO_SECONDS, BATCH_SIZE, ERRORS, LATENCY, REQUESTS, RTF
from services.serve.common import AppArgs, BadInput, Runtime, StartupError, handle

WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream")
MAX_BATCH = 16
BATCH_WAIT_S = 0.01


class Word(BaseModel):
    word: str = Field(description="A recognised word")
    start_s: float = Field(description="Start time in seconds from the start of the audio")
    end_s: float = Field(description="End time in seconds")


class TranscribeResponse(BaseModel):
    text: str = Field(description="The transcript: lower-case words separated by single spaces")
    confidence: float = Field(ge=0, le=1, description="Geometric mean of the peak posteriors of the emitted letters")
    words: list[Word] = Field(description="Words with times from the best CTC alignment")
    duration_s: float = Field(description="Duration of the received audio in seconds")
    model: str = Field(description="Identifier of the model that answered (architecture and weights hash)")


def max_body_bytes(max_seconds: float) -> int:
    """The largest WAV body the duration limit allows: 48 kHz stereo float32, plus header room."""
    return int(max_seconds * 48_000 * 2 * 4) + 65_536


# --- ingress side -------------------------------------------------------------------------------
router = APIRouter(prefix="/v1/asr", tags=["speech to text"])
_metrics: dict = {}


def _m():
    if not _metrics:
        from services.common.metrics import MetricSet

        _metrics["set"] = MetricSet(ALL, {})
    return _metrics["set"]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes without buffering it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise AudioError(f"body of {int(declared)} bytes exceeds the limit of {limit} bytes", 413, "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise AudioError(f"body exceeds the limit of {limit} bytes", 413, "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def from_multipart(body: bytes, content_type: str) -> bytes:
    """The "file" field (or the first uploaded file) of a multipart/form-data body."""
    try:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    except (UnicodeError, ValueError) as exc:
        raise AudioError(f"malformed multipart/form-data body: {exc}", 422, "multipart") from None
    if not msg.is_multipart():
        raise AudioError("malformed multipart/form-data body (no parts)", 422, "multipart")
    parts = list(msg.iter_parts())
    for part in parts:
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True) or b""
    for part in parts:
        if part.get_filename():
            return part.get_payload(decode=True) or b""
    raise AudioError("multipart/form-data upload has no 'file' field", 422, "multipart")


def audio_bytes(content_type: str, body: bytes) -> bytes:
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return from_multipart(body, content_type)
    if kind in WAV_TYPES:
        return body
    raise AudioError(f"unsupported Content-Type {kind or '(none)'!r}: send a WAV body with Content-Type audio/wav, "
                     "or a multipart/form-data upload with a 'file' field", 415, "content_type")


@router.post(
    "/transcribe",
    response_model=TranscribeResponse,
    summary="Transcribe speech in a WAV file",
    description="Send a WAV file (8-48 kHz, mono or stereo, 16-bit PCM or float) as the body with "
                "`Content-Type: audio/wav`, or as the `file` field of a multipart/form-data upload. "
                "Audio longer than the configured limit (max_audio_seconds) is refused.",
    responses={413: {"description": "Body larger than the limit"},
               415: {"description": "Not a WAV body or multipart upload"},
               422: {"description": "Not usable audio (empty, not WAV, 8-bit, too long, bad parameters)"},
               503: {"description": "The ASR model is not deployed"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "audio/wav": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
    }}},
)
async def transcribe(
    request: Request,
    decoder: Literal["greedy", "beam"] = Query("greedy", description="greedy (best path) or beam (prefix beam search)"),
    grammar: Literal["all", "digits", "commands"] | None = Query(
        None, description="With decoder=beam: only emit words of this vocabulary"),
) -> TranscribeResponse:
    t0, status = time.perf_counter(), 200
    try:
        if grammar is not None and decoder != "beam":
            raise AudioError("grammar= needs decoder=beam", 422, "parameters")
        max_s = Runtime.args.max_audio_seconds
        body = await read_body(request, max_body_bytes(max_s))
        wav = audio_bytes(request.headers.get("content-type", ""), body)
        audio = await asyncio.to_thread(load_audio, wav, max_s)
        out = await handle("asr").transcribe.remote(audio, decoder, grammar)
        return TranscribeResponse(**out)
    except AudioError as exc:
        status = exc.status_code
        _m().inc(ERRORS, 1, {"reason": exc.reason})
        raise BadInput(exc.message, exc.status_code) from None
    except BadInput as exc:
        status = exc.status_code
        _m().inc(ERRORS, 1, {"reason": "model"})
        raise
    except Exception as exc:
        status = getattr(exc, "status_code", 500)
        _m().inc(ERRORS, 1, {"reason": "unavailable" if status == 503 else "internal"})
        raise
    finally:
        _m().inc(REQUESTS, 1, {"decoder": decoder, "status": str(status)})
        _m().observe(LATENCY, (time.perf_counter() - t0) * 1e3, {"decoder": decoder})


# --- the model deployment ------------------------------------------------------------------------
def _read(uri: str) -> bytes:
    from services.common.rundir import RunDir

    parent, name = uri.rsplit("/", 1)
    rd = RunDir(parent)
    if not rd.exists(name):
        raise StartupError(f"ASR checkpoint {uri} not found: train one with `dojo asr train --run-dir {parent}` "
                           f"(or point asr_checkpoint in deploy/serve/raydojo.yaml at deploy/models/asr)")
    return rd.read_bytes(name)


@serve.deployment(name="ASRModel")
class ASRModel:
    """The CTC recogniser: features and decoding per request, the network forward batched across requests."""

    def __init__(self, model_uri: str):
        import torch

        from services.asr.model import load_model
        from services.common.metrics import MetricSet

        blob = _read(model_uri)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, _ = load_model(blob, self.device)
        self.name = f"ctc-bi{self.model.cfg.cell}-{hashlib.sha256(blob).hexdigest()[:12]}"
        self.metrics = MetricSet([AUDIO_SECONDS, RTF, BATCH_SIZE], {"deployment": "ASRModel"})
        self.batches: list[int] = []

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def forward(self, feats: list[np.ndarray]) -> list[np.ndarray]:
        """Network forward for every request that arrived within the batch window."""
        from services.asr.model import predict

        self.batches.append(len(feats))
        self.metrics.observe(BATCH_SIZE, len(feats))
        return predict(self.model, feats, self.device)

    async def transcribe(self, audio: np.ndarray, decoder: str = "greedy", grammar: str | None = None) -> dict:
        from services.asr.decode import transcribe
        from services.asr.features import log_mel

        t0 = time.perf_counter()
        duration = len(audio) / SAMPLE_RATE
        log_probs = await self.forward(log_mel(np.asarray(audio, dtype=np.float32)).numpy())
        out = transcribe(log_probs, decoder, grammar, frame_s=self.model.cfg.frame_s)
        self.metrics.inc(AUDIO_SECONDS, duration, {"decoder": decoder})
        self.metrics.observe(RTF, (time.perf_counter() - t0) / max(duration, 1e-3), {"decoder": decoder})
        return {"text": out["text"], "confidence": out["confidence"], "words": out["words"],
                "duration_s": round(duration, 3), "model": self.name}

    def stats(self) -> dict:
        """Batch sizes seen by this replica (tests and benchmarks read them)."""
        return {"batches": len(self.batches), "max_batch_size": max(self.batches, default=0),
                "mean_batch_size": float(np.mean(self.batches)) if self.batches else 0.0}

    def check_health(self) -> None:
        """Serve's periodic health check: the network must still run."""
        from services.asr.model import predict

        predict(self.model, [np.zeros((20, self.model.cfg.n_mels), np.float32)], self.device)


def model_uri(args: AppArgs) -> str:
    return args.checkpoint_path(args.asr_checkpoint).rstrip("/") + "/model.pt"


def bind(args: AppArgs):
    """The ASRModel deployment bound to ``<asr_checkpoint>/model.pt``; StartupError if it is missing."""
    if args.asr_checkpoint is None:
        return None
    uri = model_uri(args)
    if "://" not in uri and not os.path.exists(uri):
        raise StartupError(f"ASR checkpoint {uri} not found: train one with `dojo asr train --run-dir "
                           f"{uri.rsplit('/', 1)[0]}` (or point asr_checkpoint at deploy/models/asr)")
    return ASRModel.bind(uri)
