"""Speech to text over real HTTP against a local Serve, with the committed checkpoint (deploy/models/asr)."""

from __future__ import annotations

import asyncio
import json
import os
import struct

import httpx
import numpy as np
import pytest
from ray import serve

from services.asr import corpus
from services.asr.audio import encode_wav, resample
from services.serve.app import build_app
from services.serve.common import AppArgs, StartupError
from tests.conftest import REPO

APP, PREFIX = "asrtest", "/asrtest"
BASE = f"http://127.0.0.1:8000{PREFIX}"
URL = f"{BASE}/v1/asr/transcribe"
CHECKPOINT = REPO / "deploy" / "models" / "asr"
SNAPSHOT = REPO / "tests" / "asr" / "openapi_asr.json"


@pytest.fixture(scope="module")
def asr_app(ray_local):
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app({"asr_checkpoint": str(CHECKPOINT), "api_keys_env": "DOJO_TEST_NO_KEYS"}), name=APP,
              route_prefix=PREFIX)
    yield BASE
    serve.delete(APP)


@pytest.fixture(scope="module")
def held_out():
    """Clean and noisy utterances of held-out voices (unseen accents and variants), freshly rendered."""
    utts = corpus.plan("test", 12, seed=4242)
    bank = corpus.NoiseBank(4242)
    return [(u, corpus.render(u, bank)) for u in utts]


def post(data: bytes, content_type: str | None = "audio/wav", params: dict | None = None, **kw) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return httpx.post(URL, content=data, headers=headers, params=params or {}, timeout=120, **kw)


def test_held_out_utterances_round_trip(asr_app, held_out):
    """Serve answers exactly what the model gives in process, and that is mostly right (the model's sentence
    accuracy on held-out voices is ~78 %, docs/asr.md)."""
    from services.asr.audio import load_audio
    from services.asr.decode import decode_greedy
    from services.asr.features import log_mel
    from services.asr.model import load_model, predict

    model, _ = load_model((CHECKPOINT / "model.pt").read_bytes())
    right = 0
    for u, x in held_out:
        local = decode_greedy(predict(model, [log_mel(load_audio(encode_wav(x)))])[0]).text
        r = post(encode_wav(x))
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"text", "confidence", "words", "duration_s", "model"}
        assert abs(body["duration_s"] - len(x) / 16_000) < 0.01
        assert body["model"].startswith("ctc-bilstm-")
        assert [w["word"] for w in body["words"]] == body["text"].split()
        assert all(0 <= w["start_s"] < w["end_s"] <= body["duration_s"] + 0.05 for w in body["words"])
        assert body["text"] == local, (u.text, body["text"], local)
        right += body["text"] == u.text
    assert right >= len(held_out) - 3, f"{right}/{len(held_out)} transcripts exactly right"


def test_resampled_stereo_multipart_and_beam(asr_app, held_out):
    u, x = next((u, x) for u, x in held_out if not u.noise)
    greedy = post(encode_wav(x)).json()
    assert greedy["text"] == u.text
    stereo44 = np.stack([resample(x, 16_000, 44_100)] * 2, axis=1)  # 44.1 kHz stereo float
    r = post(encode_wav(stereo44, 44_100, "FLOAT"))
    assert r.status_code == 200 and r.json()["text"] == u.text
    r = httpx.post(URL, files={"file": ("u.wav", encode_wav(resample(x, 16_000, 8_000), 8_000), "audio/wav")},
                   timeout=60)
    assert r.status_code == 200, r.text
    r = post(encode_wav(x), params={"decoder": "beam", "grammar": "all"})
    assert r.status_code == 200 and r.json()["text"] == u.text
    digits = post(encode_wav(x), params={"decoder": "beam", "grammar": "digits"}).json()["text"]
    assert all(w in corpus.DIGIT_WORDS for w in digits.split())


def test_concurrent_requests_are_batched(asr_app, held_out):
    payloads = [encode_wav(x) for _, x in held_out] * 2

    async def burst():
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*[client.post(URL, content=p, headers={"Content-Type": "audio/wav"})
                                          for p in payloads])

    for _ in range(3):
        responses = asyncio.run(burst())
        assert all(r.status_code == 200 for r in responses)
        stats = serve.get_deployment_handle("ASRModel", app_name=APP).stats.remote().result()
        if stats["max_batch_size"] > 1:
            break
    assert stats["max_batch_size"] > 1, stats


def thirty_minute_wav() -> bytes:
    n = 8_000 * 1800
    header = b"RIFF" + struct.pack("<I", 36 + 2 * n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8_000,
                                                                                  16_000, 2, 16)
    return header + b"data" + struct.pack("<I", 2 * n) + bytes(2 * n)


BAD = {
    "empty body": (b"", "audio/wav", {}, 422, "empty"),
    "random bytes": (bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), "audio/wav", {}, 422,
                     "not a WAV"),
    "0-length WAV": (encode_wav(np.zeros(0), 16_000), "audio/wav", {}, 422, "no samples"),
    "30-minute WAV": (thirty_minute_wav(), "audio/wav", {}, 413, "limit"),
    "31 s, small body": (encode_wav(np.zeros(8_000 * 31), 8_000), "audio/wav", {}, 422, "limit is 30 s"),
    "8-bit audio": (encode_wav(np.zeros(8_000), 8_000, "PCM_U8"), "audio/wav", {}, 422, "8"),
    "wrong content type": (encode_wav(np.zeros(8_000), 16_000), "text/plain", {}, 415, "Content-Type"),
    "form-urlencoded (curl's default)": (b"a=b", "application/x-www-form-urlencoded", {}, 415, "audio/wav"),
    "no content type": (encode_wav(np.zeros(8_000), 16_000), None, {}, 415, "Content-Type"),
    "multipart without file": (b"--xx\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhi\r\n--xx--\r\n",
                               "multipart/form-data; boundary=xx", {}, 422, "'file'"),
    "unknown decoder": (encode_wav(np.zeros(8_000), 16_000), "audio/wav", {"decoder": "viterbi"}, 422, "decoder"),
    "grammar without beam": (encode_wav(np.zeros(8_000), 16_000), "audio/wav", {"grammar": "digits"}, 422, "beam"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_a_4xx_with_a_message(asr_app, case):
    data, ctype, params, status, needle = BAD[case]
    r = post(data, ctype, params)
    assert r.status_code == status, (case, r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and needle in detail, (case, detail)


def test_silence_and_noise_are_not_errors(asr_app):
    r = post(encode_wav(np.zeros(16_000), 16_000))
    assert r.status_code == 200 and r.json()["text"] == "" and r.json()["words"] == []
    r = post(encode_wav(np.random.default_rng(0).standard_normal(4000) * 0.1, 16_000))
    assert r.status_code == 200


def openapi_part(spec: dict) -> dict:
    """Our paths and the schemas they reference."""
    paths = {p: v for p, v in spec["paths"].items() if p.startswith("/v1/asr")}
    text = json.dumps(paths)
    names = {"TranscribeResponse", "Word", "HTTPValidationError", "ValidationError"}
    schemas = {k: v for k, v in spec["components"]["schemas"].items() if k in names or f"/{k}\"" in text}
    return {"paths": paths, "schemas": schemas}


def test_openapi_schema_is_pinned(asr_app):
    spec = httpx.get(f"{BASE}/openapi.json", timeout=30).json()
    ours = openapi_part(spec)
    if os.environ.get("DOJO_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(ours, indent=2, sort_keys=True) + "\n")
    assert ours == json.loads(SNAPSHOT.read_text()), "the ASR API changed: review, then DOJO_UPDATE_SNAPSHOTS=1"
    body = ours["paths"]["/v1/asr/transcribe"]["post"]["requestBody"]["content"]
    assert {"audio/wav", "multipart/form-data"} <= set(body)
    assert httpx.get(f"{BASE}/docs", timeout=30).status_code == 200
    health = httpx.get(f"{BASE}/healthz", timeout=30).json()
    assert "asr" in health["capabilities"]


def test_missing_checkpoint_is_a_clear_startup_error(tmp_path):
    from services.asr.serve import bind

    with pytest.raises(StartupError) as exc:
        bind(AppArgs(asr_checkpoint=str(tmp_path / "nope")))
    assert str(tmp_path / "nope" / "model.pt") in str(exc.value) and "dojo asr train" in str(exc.value)
    with pytest.raises(StartupError, match="dojo asr train"):
        build_app({"storage_root": str(tmp_path), "asr_checkpoint": "runs/asr"})


def test_documented_curl_commands(asr_app, held_out, tmp_path):
    """The curl commands of docs/asr.md and README's "Speech to text" section, run as written (base URL swapped)."""
    import shlex
    import subprocess

    from tests.asr.test_docs import documented

    u, x = next((u, x) for u, x in held_out if not u.noise and all(w in corpus.DIGIT_WORDS for w in u.text.split()))
    (tmp_path / "utterance.wav").write_bytes(encode_wav(x))
    curls = [c for c in documented() if c.startswith("curl ")]
    assert len(curls) >= 2
    for cmd in curls:
        argv = [a.replace("http://localhost:8000", BASE) for a in shlex.split(cmd)]
        p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (cmd, p.stderr)
        body = json.loads(p.stdout)
        assert body["text"] == u.text, (cmd, body)


def _replica_pids(deployment: str) -> set[int]:
    """PIDs of this app's live replicas of ``deployment`` (Ray titles a replica's process ray::ServeReplica:…)."""
    import psutil

    title = f"ray::ServeReplica:{APP}:{deployment}"
    pids = set()
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith(title):
            pids.add(p.pid)
    return pids


def test_a_killed_model_replica_is_replaced_and_no_request_is_lost(asr_app, held_out):
    """SIGKILL the ASRModel replica while four clients keep sending: Serve starts a new replica, and every request,
    those in flight at the kill included (the ingress sends them again), is answered 200 with the model's
    transcript. Without the resend, the requests in flight got a 500."""
    import signal
    import threading
    import time

    wav = encode_wav(held_out[0][1])
    expected = post(wav).json()["text"]
    (old,) = _replica_pids("ASRModel")
    answers, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            r = post(wav)
            answers.append((time.monotonic(), r.status_code, r.json().get("text") if r.status_code == 200 else r.text))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(old, signal.SIGSTOP)  # hold the replica so that every client's request is in flight when it dies
    time.sleep(1.0)
    killed_at = time.monotonic()
    os.kill(old, signal.SIGKILL)
    deadline = killed_at + 90
    while time.monotonic() < deadline and not (_replica_pids("ASRModel") - {old}
                                               and sum(t > killed_at + 0.5 for t, _, _ in answers) >= 8):
        time.sleep(0.25)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    new = _replica_pids("ASRModel")
    assert new and old not in new, "no new ASRModel replica"
    assert sum(t > killed_at + 0.5 for t, _, _ in answers) >= 8, "no answers after the replica was killed"
    bad = [(round(t - killed_at, 2), s, text) for t, s, text in answers if s != 200 or text != expected]
    assert not bad, bad
