"""Training cost of the speech model's recurrent layers: forward + backward of one data-parallel process's batch.

    .venv/bin/python bench/asr_rnn_speed.py [--threads 1] [--batch 16] [--frames 84] [--repeats 15]

Compares the packed bidirectional ``nn.GRU`` the model used first with ``BiRNN`` (padded batches,
exact per length) over LSTM and GRU cells, and a padded ``nn.LSTM(bidirectional=True)`` (fast but
not exact: its backward direction reads the padding first). Same widths as the model (input 256,
hidden 192 per direction, 2 layers), bf16 autocast where the CPU has it and fp32. Prints JSON with the
median milliseconds per step.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from services.asr.model import BiRNN
from services.asr.train import use_bf16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16, help="utterances per process and step")
    ap.add_argument("--frames", type=int, default=84, help="longest utterance, in 30 ms output frames")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_in, hidden = 256, 192
    x0 = torch.randn(args.batch, args.frames, n_in)
    lens = torch.randint(int(args.frames * 0.8), args.frames + 1, (args.batch,))
    lens[0] = args.frames
    gru = nn.GRU(n_in, hidden, 2, batch_first=True, bidirectional=True)
    lstm = nn.LSTM(n_in, hidden, 2, batch_first=True, bidirectional=True)
    bi_lstm, bi_gru = BiRNN("lstm", n_in, hidden, 2, 0.15), BiRNN("gru", n_in, hidden, 2, 0.15)

    def packed_gru(x):
        packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(gru(packed)[0], batch_first=True)[0]

    cases = {"packed nn.GRU (before)": packed_gru, "BiRNN lstm (now)": lambda x: bi_lstm(x, lens)[-1],
             "BiRNN gru": lambda x: bi_gru(x, lens)[-1], "padded nn.LSTM (not exact)": lambda x: lstm(x)[0]}
    out = {"threads": args.threads, "batch": args.batch, "frames": args.frames}
    for precision in (["bf16"] if use_bf16("auto", "cpu") else []) + ["fp32"]:
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.repeats):  # interleaved, so that load changes hit every case alike
            for name, fn in cases.items():
                x = x0.clone().requires_grad_()
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    y = fn(x)
                y.float().sum().backward()
                times[name].append(time.perf_counter() - t0)
        out[precision] = {k: round(sorted(v)[len(v) // 2] * 1e3, 1) for k, v in times.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
