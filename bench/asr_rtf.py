"""Real-time factor of the speech recogniser alone: features + network + decoding, one utterance at a time.

    .venv/bin/python bench/asr_rtf.py --model deploy/models/asr/model.pt --n 200 [--threads 1] [--device cuda]

Renders ``--n`` held-out utterances (espeak-ng, voices never seen in training), then times
each stage per utterance on one CPU thread (or the GPU) and prints JSON: rtf (total time /
audio time) and its parts, and the same for batches of 16.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from services.asr import corpus
from services.asr.decode import decode_greedy, prefix_beam_search
from services.asr.features import log_mel
from services.asr.model import load_model, predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deploy/models/asr/model.pt")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=77)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.model, "rb") as f:
        model, _ = load_model(f.read(), a.device)
    bank = corpus.NoiseBank(a.seed)
    audio = [corpus.render(u, bank) for u in corpus.plan("test", a.n, a.seed)]
    seconds = sum(len(x) for x in audio) / 16_000
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    predict(model, [log_mel(audio[0]).numpy()], a.device)  # warm-up
    t_feat = t_net = t_greedy = t_beam = 0.0
    for x in audio:
        t0 = time.perf_counter()
        f = log_mel(x).numpy()
        t1 = time.perf_counter()
        lp = predict(model, [f], a.device)[0]
        sync()
        t2 = time.perf_counter()
        decode_greedy(lp)
        t3 = time.perf_counter()
        prefix_beam_search(lp, beam=8, grammar_name="all")
        t4 = time.perf_counter()
        t_feat, t_net, t_greedy, t_beam = t_feat + t1 - t0, t_net + t2 - t1, t_greedy + t3 - t2, t_beam + t4 - t3
    feats = [log_mel(x).numpy() for x in audio]
    t0 = time.perf_counter()
    for s in range(0, len(feats), 16):
        predict(model, feats[s:s + 16], a.device)
    sync()
    t_batched = time.perf_counter() - t0
    out = {
        "device": a.device, "threads": a.threads, "utterances": a.n, "audio_s": round(seconds, 1),
        "rtf": (t_feat + t_net + t_greedy) / seconds,
        "rtf_features": t_feat / seconds, "rtf_network": t_net / seconds, "rtf_greedy_decode": t_greedy / seconds,
        "rtf_beam_decode": t_beam / seconds, "rtf_network_batch16": t_batched / seconds,
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
