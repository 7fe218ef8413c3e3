"""``dojo asr train``: render (or reuse) the corpus, train the CTC model, write checkpoints and model.pt.

    data/train.npz ──► length-bucketed batches ──► augment (VTLP, speed, channel, SpecAugment)
        ──► CTCModel ──► torch.nn.CTCLoss ──► AdamW, warm-up + cosine schedule ──► checkpoints/, model.pt

The learning-rate schedule runs over whichever budget ends first, ``--epochs`` or
``--max-minutes``, so a busy machine still finishes its schedule (with fewer steps) on time.
``--gpus G`` runs the same loop as a Ray task holding G GPUs (fractions allowed), on CUDA.
A training process that dies (or the task's worker) is started again from the newest checkpoint, up to
``--max-restarts`` times; ``--auto-resume`` lets the same command run again after the whole job died.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import time
from typing import Any, Literal

import numpy as np
import torch

from services.asr import corpus, features
from services.asr.decode import greedy
from services.asr.model import CTCModel, ModelConfig, export_state, n_params, pad_batch, predict
from services.asr.text import decode, encode
from services.common import checkpoint
from services.common.config import ConfigError, fail, parse, require, resolve_auto_resume, to_dict
from services.common.progress import Progress, log, setup_logging
from services.common.rundir import RunDir


@dataclasses.dataclass
class TrainArgs:
    """Train the CTC speech recogniser on the synthesised corpus (rendered into the run-dir on first use)."""

    run_dir: str = "runs/asr"
    """Where data/, config.json, result.json, checkpoints/ and model.pt go (path or pyarrow URI)."""
    epochs: int = 10
    """Passes over the training set (the schedule ends earlier if --max-minutes runs out first)."""
    max_minutes: float = 0.0
    """Wall-clock budget for the training loop in minutes (0 = none); the LR schedule follows it."""
    gpus: float = 0.0
    """GPUs for training (fractions allowed): > 0 runs the loop as a Ray task on a GPU node, on CUDA."""
    resume: bool = False
    """Continue from the newest checkpoint in --run-dir."""
    auto_resume: bool = False
    """Resume when --run-dir already holds checkpoints and start afresh when it holds none, so the same command can
    simply be run again after a crash (the Helm chart's RayJobs pass it: a retried job resumes)."""
    max_restarts: int = 3
    """Times a training process that dies (killed, out of memory, its GPU node lost) is started again, from the
    newest checkpoint (one per epoch); result.json counts them as ``restarts``."""
    seed: int = 0
    """Seed of the corpus plan, network initialisation, batching and augmentation."""
    n_train: int = corpus.DEFAULT_SIZES["train"]
    """Training utterances to synthesise."""
    n_val: int = corpus.DEFAULT_SIZES["val"]
    """Validation utterances (training voices, new texts) for the per-epoch greedy WER."""
    pico_share: float = 0.0
    """Share of the recorded-speaker training utterances (a quarter of them) read by SVOX Pico's two English women
    instead of festival's voices (needs the `pico` extra). 0.3 cost 0.4 points of held-out WER and gained 1.6 of
    flite's, on average over two corpora (e58, e59 in docs/asr.md), so the recipe keeps 0."""
    data_workers: int = 0
    """Ray tasks rendering the corpus at a time (0 = the cluster's CPU count)."""
    batch_frames: int = 8_000
    """Most padded input frames (10 ms each) per batch."""
    lr: float = 2e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    warmup: float = 0.06
    """Fraction of the schedule spent warming the learning rate up."""
    max_grad_norm: float = 2.0
    """Clip gradients to this global L2 norm (it is 5-18 even at the end of a run, so almost every step is clipped;
    clipping at 1 / 2 / 5 / 20 gave 6.0 / 5.6 / 6.1 / 6.7 % held-out greedy WER: docs/asr.md, e46 / e45 / e21 / e44)."""
    channels: int = 32
    """Channels of the subsampling convolutions."""
    subsample: int = 3
    """Time subsampling of the convolutions (2, 3 or 4)."""
    proj: int = 256
    """Width of the projection from the convolutions to the recurrent layers."""
    hidden: int = 192
    """Recurrent hidden size per direction."""
    layers: int = 2
    """Bidirectional recurrent layers."""
    cell: Literal["lstm", "gru"] = "lstm"
    """Recurrent cell (on CPU the LSTM trains about twice as fast: oneDNN's fused kernels)."""
    dropout: float = 0.15
    """Dropout on the projection, between recurrent layers and before the output layer."""
    augment: bool = True
    """Feature augmentation: VTLP, speed, random channel, SpecAugment."""
    vtlp: float = 0.15
    """Vocal-tract-length warp factors are drawn from [1 − vtlp, 1 + vtlp]."""
    speed: float = 0.15
    """Speed-perturbation rates are drawn from [1 − speed, 1 + speed]."""
    spec_augment: bool = True
    """SpecAugment (frequency and time masks) on top of --augment."""
    mix_speech: float = 0.2
    """Share of training utterances with another training utterance mixed under them: an interfering talker
    --mix-snr dB below, in the log-mel power domain, new each epoch (0 = off; runs e49-e56 in docs/asr.md)."""
    mix_snr: tuple[float, float] = (8.0, 25.0)
    """Range of the interfering talker's level below the target's (mean power ratio in dB, drawn uniformly)."""
    procs: int = 2
    """Data-parallel training processes on CPU (torch.distributed, gloo), each with --threads threads."""
    threads: int = 1
    """torch CPU threads per training process (0 = torch's default); on CPU each process also augments its batches."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """bf16 autocast for the convolutions and the recurrent layers (auto: when the CPU or GPU supports bfloat16)."""
    inter_ctc: float = 0.3
    """Weight w of intermediate CTC on the lower recurrent layers' outputs, through the same output layer
    (loss (1 − w)·CTC + w·mean CTC_inter; 0 = off; needs --layers >= 2, off with one layer)."""
    self_condition: bool = True
    """Self-conditioned CTC: each lower layer's character posteriors are projected and added to the next
    layer's input, in serving too (needs --layers >= 2, off with one layer)."""

    def validate(self) -> None:
        require(self.epochs >= 1, f"--epochs must be >= 1 (got {self.epochs})")
        require(self.max_minutes >= 0, f"--max-minutes must be >= 0 (got {self.max_minutes})")
        require(self.gpus >= 0, f"--gpus must be >= 0 (got {self.gpus})")
        require(self.gpus <= 1 or float(self.gpus).is_integer(), f"--gpus above 1 must be whole (got {self.gpus})")
        require(self.n_train >= 1, f"--n-train must be >= 1 (got {self.n_train})")
        require(self.n_val >= 1, f"--n-val must be >= 1 (got {self.n_val})")
        require(0 <= self.pico_share <= 1, f"--pico-share must be in [0, 1] (got {self.pico_share})")
        require(self.data_workers >= 0, f"--data-workers must be >= 0 (got {self.data_workers})")
        require(self.batch_frames >= 1000, f"--batch-frames must be >= 1000 (got {self.batch_frames})")
        require(self.lr > 0, f"--lr must be > 0 (got {self.lr})")
        require(0 <= self.warmup < 1, f"--warmup must be in [0, 1) (got {self.warmup})")
        require(self.subsample in (2, 3, 4), f"--subsample must be 2, 3 or 4 (got {self.subsample})")
        require(min(self.channels, self.proj, self.hidden, self.layers) >= 1,
                "--channels, --proj, --hidden and --layers must be >= 1")
        require(0 <= self.dropout < 1, f"--dropout must be in [0, 1) (got {self.dropout})")
        require(0 <= self.vtlp < 0.5 and 0 <= self.speed < 0.5, "--vtlp and --speed must be in [0, 0.5)")
        require(0 <= self.mix_speech < 1, f"--mix-speech must be in [0, 1) (got {self.mix_speech})")
        require(self.mix_snr[0] <= self.mix_snr[1], f"--mix-snr must be LOW HIGH with LOW <= HIGH (got {self.mix_snr})")
        require(self.threads >= 0, f"--threads must be >= 0 (got {self.threads})")
        require(self.procs >= 1, f"--procs must be >= 1 (got {self.procs})")
        require(self.max_restarts >= 0, f"--max-restarts must be >= 0 (got {self.max_restarts})")
        require(0 <= self.inter_ctc < 1, f"--inter-ctc must be in [0, 1) (got {self.inter_ctc})")

    def model_config(self) -> ModelConfig:
        return ModelConfig(channels=self.channels, subsample=self.subsample, proj=self.proj, hidden=self.hidden,
                           layers=self.layers, cell=self.cell, dropout=self.dropout,
                           self_condition=self.self_condition and self.layers > 1)


# --- batches ------------------------------------------------------------------------------------------
def make_batches(lengths: np.ndarray, batch_frames: int, rng: np.random.Generator,
                 shortest_first: bool = False) -> list[np.ndarray]:
    """Length-bucketed batches (similar lengths together, little padding) in random order, or shortest first
    (SortaGrad: the first epoch sees short utterances, which CTC aligns easily, before long ones)."""
    order = np.argsort(lengths + rng.uniform(0, 20, len(lengths)), kind="stable")  # jitter: new groupings
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and lengths[order[end]] * (end + 1 - start) <= batch_frames:
            end += 1
        batches.append(order[start:end])
        start = end
    if not shortest_first:
        rng.shuffle(batches)
    return batches


def augment(f: torch.Tensor, args: TrainArgs, rng: np.random.Generator) -> torch.Tensor:  # (T, F) -> (T', F)
    """One utterance's raw log-mel (T, F) -> augmented, normalised features."""
    if args.augment:
        f = f + features.random_channel(f.shape[1], rng)
        if args.vtlp > 0:
            f = features.warp_frequency(f, float(rng.uniform(1 - args.vtlp, 1 + args.vtlp)))
        if args.speed > 0:
            f = features.warp_time(f, float(rng.uniform(1 - args.speed, 1 + args.speed)))
    f = features.normalize(f)
    return features.spec_augment(f, rng) if args.augment and args.spec_augment else f


def mix_talker(f: torch.Tensor, g: torch.Tensor, snr_db: float, rng: np.random.Generator) -> torch.Tensor:
    """Raw log-mel ``f`` (T, F) with raw log-mel ``g`` mixed under it at ``snr_db`` (mean power ratio), in the power
    domain; ``g`` is tiled or cropped (at a random offset) to T frames."""
    T = f.shape[0]
    if g.shape[0] < T:
        g = g.repeat(-(-T // g.shape[0]), 1)
    start = int(rng.integers(0, g.shape[0] - T + 1))
    p, q = f.exp(), g[start:start + T].exp()
    return (p + q * (p.mean() / q.mean() / 10 ** (snr_db / 10))).log()


class BatchSet(torch.utils.data.Dataset):
    """Batch ``i`` of an epoch, augmented with its own seed (the same batches whichever process builds them)."""

    def __init__(self, split: corpus.Split, targets: list[torch.Tensor], batches: list[np.ndarray],
                 args: TrainArgs, epoch: int):
        self.split, self.targets, self.batches, self.args, self.epoch = split, targets, batches, args, epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.args.seed, self.epoch, i])
        idx = self.batches[i]
        feats = []
        for j in idx:
            f = torch.from_numpy(self.split.features(j).astype(np.float32))
            if self.args.mix_speech > 0 and rng.random() < self.args.mix_speech:
                g = torch.from_numpy(self.split.features(int(rng.integers(len(self.split)))).astype(np.float32))
                f = mix_talker(f, g, float(rng.uniform(*self.args.mix_snr)), rng)
            feats.append(augment(f, self.args, rng))
        x, x_len = pad_batch(feats)
        tgt = [self.targets[j] for j in idx]
        return x, x_len, torch.cat(tgt), torch.tensor([len(t) for t in tgt])


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def ctc_objective(ctc_loss: torch.nn.CTCLoss, out: tuple, tgt: torch.Tensor, tgt_len: torch.Tensor,
                  inter_w: float) -> torch.Tensor:
    """The training loss of ``CTCModel``'s output ``(log_probs, out_len[, intermediates])``:
    (1 − w)·CTC + w·mean of the intermediate layers' CTC when ``inter_w`` = w > 0, else CTC."""
    loss = ctc_loss(out[0].transpose(0, 1), tgt, out[1], tgt_len)
    if inter_w > 0:
        inter = sum(ctc_loss(lp.transpose(0, 1), tgt, out[1], tgt_len) for lp in out[2]) / len(out[2])
        loss = (1 - inter_w) * loss + inter_w * inter
    return loss


def cpu_name() -> str:
    """The CPU's model name and its best bf16 instructions (Linux): what a wall-clock budget buys depends on them.
    A training step took 92 ms on the CPU the committed model was trained on, 143 ms on an AMD EPYC with
    avx512_bf16 but no AMX (bench/README.md)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown"
    fields: dict[str, str] = {}
    for line in info.splitlines():  # the first CPU's block is enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    isa = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), "")
    name = fields.get("model name", "unknown")
    return f"{name} ({isa})" if isa else name


def use_bf16(precision: str, device: str) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def schedule(progress: float, warmup: float) -> float:
    """LR multiplier: linear warm-up, then cosine decay to 2% at progress 1."""
    if progress < warmup:
        return max(progress / warmup, 0.02)
    p = (progress - warmup) / (1 - warmup)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return float(jiwer.wer(refs, hyps))


def char_error_rate(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return float(jiwer.cer(refs, hyps))


def greedy_texts(model: CTCModel, split: corpus.Split, device: str, batch: int = 64, bf16: bool = False) -> list[str]:
    model.eval()
    out = []
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(split), batch):
            for lp in predict(model, [split.features(i) for i in range(s, min(len(split), s + batch))], device):
                out.append(" ".join(decode(greedy(lp)).split()))
    return out


# --- the loop -------------------------------------------------------------------------------------------
def fit(args: TrainArgs, run_dir_uri: str, device: str, rank: int = 0, world: int = 1) -> dict[str, Any]:
    """Train on the cached corpus in the run-dir; returns result.json's content (on rank 0).

    With ``world`` > 1 this is one of ``world`` data-parallel processes (torch.distributed, gloo):
    every process builds the same global batches and takes its share of each, DDP averages the
    gradients, and rank 0 decides when the time budget is spent, validates and writes checkpoints.
    """
    import torch.distributed as dist

    setup_logging()
    run_dir = RunDir(run_dir_uri)
    data = corpus.ensure(run_dir, {"train": args.n_train, "val": args.n_val}, args.seed, args.data_workers or 1,
                         args.pico_share)
    train, val = data["train"], data["val"]
    torch.manual_seed(args.seed)  # the same initial weights in every process
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model = CTCModel(args.model_config()).to(device)
    if world > 1:  # each process keeps its own BatchNorm statistics (rank 0's are saved): no broadcast per step
        # (buffers are still synced once at construction, where every process holds the same ones anyway)
        net = torch.nn.parallel.DistributedDataParallel(model, forward_sync_buffers=False)
    elif device == "cuda" and torch.cuda.device_count() > 1:  # several GPUs in one Ray task
        net = torch.nn.DataParallel(model)
    else:
        net = model
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    ctc_loss = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    targets = [torch.tensor(encode(t), dtype=torch.long) for t in train.texts]
    lengths = train.lengths
    per_epoch = len(make_batches(lengths, args.batch_frames, np.random.default_rng(0)))
    total_steps = args.epochs * per_epoch
    budget_s = args.max_minutes * 60 or math.inf
    step, epoch0, trained_s, history = 0, 0, 0.0, []
    if args.resume:
        found = checkpoint.load_latest(run_dir, map_location=device)
        if found is None:
            raise ConfigError(f"--resume: no checkpoint in --run-dir {args.run_dir!r}")
        _, state = found
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, epoch0, trained_s, history = state["step"], state["epoch"], state["trained_s"], state["history"]
        if rank == 0:
            log.info("asr train: resumed at epoch %d, step %d", epoch0, step)
    if rank == 0:
        log.info("asr train: %d utterances (%.0f s of audio), %d parameters, %d batches per epoch, %d process(es), "
                 "device %s", len(train), float(train.durations.sum()), n_params(model), per_epoch, world, device)

    def progress() -> float:
        """Fraction of the schedule done: steps or wall time, whichever is further along (rank 0's clock)."""
        p = torch.tensor([max(step / total_steps, trained_s / budget_s)], dtype=torch.float64)
        if world > 1:
            dist.broadcast(p, 0)
        return float(p)

    val_wer = history[-1]["val_wer"] if history else float("nan")
    bf16 = use_bf16(args.precision, device)
    inter_w = args.inter_ctc if args.layers > 1 else 0.0
    shown = Progress("asr train", total=total_steps, unit="steps", initial=step) if rank == 0 else contextlib.nullcontext()
    with shown as bar:
        epoch = epoch0
        done = progress()
        clock = time.monotonic()  # trained_s: wall clock of the loop (steps, batch waits, validation, checkpoints)
        while epoch < args.epochs and done < 1.0:
            batches = make_batches(lengths, args.batch_frames, np.random.default_rng([args.seed, epoch]),
                                   shortest_first=epoch == 0)
            share = [b[rank::world] for b in batches if len(b) >= world]  # this process's part of each batch
            sizes = [len(b) for b in batches if len(b) >= world]
            batch_set = BatchSet(train, targets, share, args, epoch * world + rank)
            # On CPU the batches are augmented in the training process itself: with a loader worker per process,
            # make asr-model took 4 526 steps in 13 minutes on 2 cores, against 5 375 without (the workers' CPU
            # share and inter-process copies cost more than the augmentation). A GPU step is fast: workers keep
            # it fed.
            loader = batch_set if device == "cpu" else torch.utils.data.DataLoader(
                batch_set, batch_size=None, shuffle=False, num_workers=2, prefetch_factor=4, pin_memory=True,
                worker_init_fn=_worker_init)
            net.train()
            losses, t_epoch = [], time.monotonic()
            for i, (x, x_len, tgt, tgt_len) in enumerate(loader):
                for g in opt.param_groups:
                    g["lr"] = args.lr * schedule(done, args.warmup)
                tgt, tgt_len = tgt.to(device), tgt_len.to(device)
                with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                    out = net(x.to(device), x_len.to(device), intermediate=inter_w > 0)
                # Σ loss over the global batch / its size: DDP averages over processes, hence × world
                loss = ctc_objective(ctc_loss, out, tgt, tgt_len, inter_w) * world / sizes[i]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                opt.step()
                step += 1
                trained_s, clock = trained_s + time.monotonic() - clock, time.monotonic()
                losses.append(loss.item() / world * sizes[i] / len(x_len))
                done = progress()
                if bar is not None:
                    if step / total_steps < done:  # the time budget ends the schedule first: estimate its steps
                        bar.set_total(max(step, round(step / done)))
                    bar.update(step, loss=float(np.mean(losses[-20:])), epoch=epoch + 1)
                if done >= 1.0:
                    break
            del loader
            epoch += 1
            if rank == 0:
                hyps = greedy_texts(model, val, device, bf16=bf16)
                val_wer = word_error_rate(val.texts, hyps)
                history.append({"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "val_wer": val_wer,
                                "epoch_s": round(time.monotonic() - t_epoch, 1)})
                log.info("asr train: epoch %d step %d loss %.3f val WER %.4f (%.0f s)", epoch, step,
                         np.mean(losses), val_wer, time.monotonic() - t_epoch)
                trained_s, clock = trained_s + time.monotonic() - clock, time.monotonic()
                checkpoint.save(run_dir, step, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                                "step": step, "epoch": epoch, "trained_s": trained_s,
                                                "history": history, "config": to_dict(args)})
            done = progress()
    result: dict[str, Any] = {}
    if rank == 0:
        model.eval()
        run_dir.write_bytes("model.pt", export_state(model.cpu(), {"val_wer": val_wer, "steps": step,
                                                                   "seed": args.seed, "n_train": args.n_train}))
        result = {
            "epochs": epoch, "steps": step, "train_s": round(trained_s, 1), "val_wer": val_wer,
            "final_loss": history[-1]["loss"] if history else float("nan"), "n_params": n_params(model),
            "n_train": len(train), "train_audio_s": round(float(train.durations.sum()), 1), "device": device,
            "precision": "bf16" if bf16 else "fp32", "processes": world,
            "cpu": cpu_name(),
        }
    if world > 1:
        dist.barrier()  # nobody leaves the process group while rank 0 still writes
    return result


def die_with_parent(parent: int) -> None:
    """Linux: have the kernel SIGKILL this process when the one that spawned it dies (PR_SET_PDEATHSIG).

    Without it, a `dojo asr train` killed by a supervisor, a container runtime or a test's timeout left its
    training processes running as orphans, still writing checkpoints and model.pt into the run-dir."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _fit_process(rank: int, world: int, port: int, args: TrainArgs, run_dir_uri: str, results, parent: int) -> None:
    """One data-parallel training process (torch.multiprocessing.spawn target)."""
    import torch.distributed as dist

    die_with_parent(parent)
    torch.set_num_threads(args.threads or 1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = fit(args, run_dir_uri, "cpu", rank, world)
        if rank == 0:
            results.put(result)
    finally:
        dist.destroy_process_group()


def fit_processes(args: TrainArgs, run_dir_uri: str) -> dict[str, Any]:
    """``--procs`` data-parallel CPU processes on this machine (one thread each)."""
    if args.procs == 1:
        return fit(args, run_dir_uri, "cpu")
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_fit_process, args=(args.procs, port, args, run_dir_uri, results, os.getpid()), nprocs=args.procs,
             join=True)
    return results.get()


def _fit_remote(args: TrainArgs, run_dir_uri: str) -> dict[str, Any]:
    """Ray task body for --gpus: the same loop on this task's GPU(s)."""
    if not torch.cuda.is_available():
        raise RuntimeError("--gpus was given but this Ray task sees no CUDA device")
    return fit(args, run_dir_uri, "cuda")


def process_deaths() -> tuple[type[BaseException], ...]:
    """What a training process's death raises here: a spawned CPU process killed or exiting without a Python
    exception, or the --gpus Ray task's worker or node lost. A Python exception is not one: it would recur."""
    import ray.exceptions
    from torch.multiprocessing import ProcessExitedException

    return (ProcessExitedException, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.OutOfMemoryError)


def prepare_run_dir(args: TrainArgs) -> RunDir:
    """Check the run-dir against --resume before anything starts (ConfigError otherwise)."""
    run_dir = RunDir(args.run_dir).ensure_writable()
    has_ckpt = bool(checkpoint.list_steps(run_dir))
    resolve_auto_resume(args, has_ckpt)
    if args.resume and not has_ckpt:
        raise ConfigError(f"--resume: no checkpoint in --run-dir {args.run_dir!r}")
    if not args.resume and (has_ckpt or run_dir.exists("model.pt")):
        raise ConfigError(f"--run-dir {args.run_dir!r} already holds a trained model: pass --resume (or "
                          "--auto-resume) or use a new run-dir")
    return run_dir


def train(args: TrainArgs) -> dict[str, Any]:
    import ray

    from services.common.ray_utils import init_ray, require_gpus

    run_dir = prepare_run_dir(args)
    run_dir.write_json("config.json", to_dict(args))
    resources = init_ray()
    require_gpus("--gpus", args.gpus, resources)  # before the corpus is rendered
    if not args.data_workers:
        args = dataclasses.replace(args, data_workers=max(1, int(resources.get("CPU", 1))))
    t0 = time.monotonic()
    # render the corpus first (Ray tasks), so that the training loop's budget is the loop's alone
    corpus.ensure(run_dir, {"train": args.n_train, "val": args.n_val}, args.seed, args.data_workers, args.pico_share)
    data_s = time.monotonic() - t0
    restarts = 0
    while True:
        try:
            if args.gpus > 0:  # Ray must not retry the task itself: a retry would start from the first step
                task = ray.remote(_fit_remote).options(num_gpus=args.gpus, num_cpus=1, max_retries=0)
                result = ray.get(task.remote(args, run_dir.uri))
            else:
                result = fit_processes(args, run_dir.uri)
            break
        except process_deaths() as e:
            if restarts >= args.max_restarts:
                raise
            restarts += 1
            resumable = bool(checkpoint.list_steps(run_dir))
            log.warning("asr train: a training process died (%s); restart %d of %d from %s", str(e).splitlines()[0],
                        restarts, args.max_restarts, "the newest checkpoint" if resumable else "the first step")
            args = dataclasses.replace(args, resume=resumable)
    result["restarts"] = restarts
    result["data_s"] = round(data_s, 1)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    run_dir.write_json("result.json", result)
    log.info("done: %s", {k: result[k] for k in ("epochs", "steps", "val_wer", "train_s", "wall_s")})
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from services.common.ray_utils import shutdown_ray_if_local

    setup_logging()
    args = parse(TrainArgs, argv, prog="dojo asr train")
    try:
        prepare_run_dir(args)
        return train(args)
    except ConfigError as exc:
        fail("dojo asr train", str(exc))
    finally:
        shutdown_ray_if_local()


if __name__ == "__main__":
    main()
