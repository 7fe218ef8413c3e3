"""``dojo maml train``: meta-train MAML, first-order MAML or Reptile, then meta-test it.

    for iteration in 1..I:
        meta-batch of T tasks (support, query) from meta-train
        learner.step(meta-batch)          # maml.MetaLearner or reptile.Reptile
        every val_every: adapt + score on meta-val tasks; keep the best θ; checkpoint
    meta-test the best θ on ≥ 600 held-out tasks (mean, 95% CI)
    baselines (joint training, scratch) on the same tasks → result.json

The loop is the same inside a Ray Tune trial (``services.sweeps.maml``): there the
``on_validate`` hook reports to Tune and checkpoints through it instead of the run-dir.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from collections.abc import Callable
from typing import Any, Literal

import torch

from services.common import checkpoint
from services.common.config import ConfigError, fail, parse, require, to_dict
from services.common.progress import Progress, log, setup_logging
from services.common.rundir import RunDir
from services.maml import baselines
from services.maml import metrics as M
from services.maml.evaluate import Score, evaluate
from services.maml.maml import MetaLearner
from services.maml.reptile import Reptile
from services.maml.tasks import Family, fewshot_family, sinusoid_family

# Disjoint random streams: meta-train tasks use seed, meta-val seed + VAL, meta-test seed + TEST.
VAL_SEED, TEST_SEED = 1_000_003, 2_000_003
SINE_SHOTS, SINE_STEPS = (5, 10), (1, 5, 10)  # what result.json reports for the sinusoid


@dataclasses.dataclass
class TrainArgs:
    """Meta-train MAML (second order), first-order MAML or Reptile; meta-test against two baselines."""

    algo: Literal["maml", "fomaml", "reptile"] = "maml"
    """maml = exact second-order meta-gradient; fomaml = inner gradients treated as constants; reptile."""
    task: Literal["sinusoid", "fewshot"] = "sinusoid"
    """sinusoid regression (Finn et al. 2017) or N-way K-shot glyph classification (docs/maml.md)."""
    ways: int = 5
    """N: classes per few-shot task (ignored for sinusoid)."""
    shots: int | None = None
    """K: support examples per class (few-shot, default 1) or per task (sinusoid, default 10)."""
    queries: int | None = None
    """Query examples per class (few-shot, default 5) or per task (sinusoid, default K) in meta-training."""
    iterations: int | None = None
    """Meta-iterations (outer updates); default 20000 for sinusoid, 3000 for few-shot."""
    meta_batch: int | None = None
    """Tasks per meta-iteration; default 25 for sinusoid, 8 for few-shot."""
    meta_lr: float | None = None
    """Outer step size: Adam's learning rate for (FO)MAML (default 1e-3); Reptile's ε, decayed linearly to 0 (default 1.0)."""
    inner_lr: float | None = None
    """Inner-loop (adaptation) step size α; default 0.01 for sinusoid, 0.4 (MAML) / 0.1 (Reptile) for few-shot."""
    inner_steps: int | None = None
    """Inner gradient steps during meta-training; default 1 for (FO)MAML, 5 for Reptile."""
    eval_steps: int = 10
    """Adaptation steps at meta-validation/meta-test time (sinusoid also reports 1, 5 and 10)."""
    eval_tasks: int = 600
    """Meta-test tasks for the final mean and 95% confidence interval."""
    eval_queries: int | None = None
    """Query examples per class (few-shot, default --queries) or per task (sinusoid, default 100) at test time."""
    val_tasks: int = 100
    """Meta-validation tasks scored every --val-every iterations (model selection, Tune's metric)."""
    val_every: int | None = None
    """Validate (and checkpoint) every N meta-iterations; default iterations / 10."""
    baselines: bool = True
    """Also train and score the baselines: joint training, from scratch, and (few-shot) transfer."""
    baseline_iterations: int | None = None
    """Joint-training / transfer iterations (each on meta-batch × N × (K + Q) examples); default --iterations."""
    joint_lr: float = 1e-3
    """Adam learning rate of the joint-training and transfer baselines."""
    baseline_val_tasks: int = 200
    """Meta-validation tasks for choosing the fine-tuning step size (baselines, and --tune-eval-lr)."""
    tune_eval_lr: bool = True
    """Choose the meta-learner's test-time step size on meta-val too ({inner lr} ∪ the baselines' grid)."""
    hidden: int = 40
    """Hidden width of the sinusoid MLP (two layers)."""
    channels: int = 32
    """Filters per conv layer of the few-shot network."""
    distort: bool = True
    """Random affine distortion of every glyph image (few-shot)."""
    cache_dir: str | None = None
    """Where the rendered glyph benchmark is cached (default $DOJO_CACHE_DIR or ~/.cache/raydojo/glyphs)."""
    vmap_tasks: bool = True
    """Batch the tasks of a meta-batch with torch.func.vmap (False: a Python loop)."""
    device: str = "cpu"
    """Torch device (cpu, cuda, cuda:1, ...)."""
    threads: int = 0
    """torch.set_num_threads (0 = leave torch's default; 1 avoids oversubscription on busy CPUs)."""
    run_dir: str = "runs/maml"
    """Where config.json, result.json, model.pt and checkpoints/ go (path or pyarrow URI)."""
    resume: bool = False
    """Continue from the newest checkpoint in --run-dir."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep."""
    seed: int = 0
    """Random seed (initialisation, task streams)."""

    def validate(self) -> None:
        sine = self.task == "sinusoid"
        reptile = self.algo == "reptile"
        if self.shots is None:
            self.shots = 10 if sine else 1
        if self.queries is None:
            self.queries = self.shots if sine else 5
        if self.eval_queries is None:
            self.eval_queries = 100 if sine else self.queries
        if self.iterations is None:
            self.iterations = 20_000 if sine else 3_000
        if self.meta_batch is None:
            self.meta_batch = 25 if sine else 8
        if self.inner_lr is None:
            self.inner_lr = 0.01 if sine else (0.1 if reptile else 0.4)
        if self.meta_lr is None:
            self.meta_lr = 1.0 if reptile else 1e-3
        if self.inner_steps is None:
            self.inner_steps = 5 if reptile else 1
        if self.val_every is None:
            self.val_every = max(1, self.iterations // 10)
        if self.baseline_iterations is None:
            self.baseline_iterations = self.iterations
        require(self.ways >= 2, f"--ways must be >= 2 (got {self.ways})")
        require(self.shots >= 1, f"--shots must be >= 1 (got {self.shots})")
        require(self.queries >= 1, f"--queries must be >= 1 (got {self.queries})")
        require(self.eval_queries >= 1, f"--eval-queries must be >= 1 (got {self.eval_queries})")
        require(self.iterations >= 1, f"--iterations must be >= 1 (got {self.iterations})")
        require(self.meta_batch >= 1, f"--meta-batch must be >= 1 (got {self.meta_batch})")
        require(self.meta_lr > 0, f"--meta-lr must be > 0 (got {self.meta_lr})")
        require(self.inner_lr > 0, f"--inner-lr must be > 0 (got {self.inner_lr})")
        require(self.inner_steps >= 1, f"--inner-steps must be >= 1 (got {self.inner_steps})")
        require(self.eval_steps >= 1, f"--eval-steps must be >= 1 (got {self.eval_steps})")
        require(self.eval_tasks >= 2, f"--eval-tasks must be >= 2 (got {self.eval_tasks})")
        require(self.val_tasks >= 1, f"--val-tasks must be >= 1 (got {self.val_tasks})")
        require(self.val_every >= 1, f"--val-every must be >= 1 (got {self.val_every})")
        require(self.baseline_iterations >= 1, f"--baseline-iterations must be >= 1 (got {self.baseline_iterations})")
        require(self.baseline_val_tasks >= 1, f"--baseline-val-tasks must be >= 1 (got {self.baseline_val_tasks})")
        require(self.hidden >= 1 and self.channels >= 1, "--hidden and --channels must be >= 1")
        require(self.threads >= 0, f"--threads must be >= 0 (got {self.threads})")
        require(self.keep_checkpoints >= 1, f"--keep-checkpoints must be >= 1 (got {self.keep_checkpoints})")
        if self.device != "cpu":
            require(self.device.startswith("cuda"), f"--device must be cpu or cuda[:N] (got {self.device!r})")
            require(torch.cuda.is_available(), f"--device {self.device}: CUDA is not available here")


def build_family(args: TrainArgs) -> Family:
    if args.task == "sinusoid":
        return sinusoid_family(args.hidden)
    try:
        return fewshot_family(args.ways, args.channels, args.cache_dir, args.distort)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from exc


def _metric_set(args: TrainArgs, run: str):
    """Live Ray metrics when this process is attached to Ray, else None."""
    try:
        import ray
    except ImportError:  # pragma: no cover
        return None
    if not ray.is_initialized():
        return None
    from services.common.metrics import MetricSet

    return MetricSet(M.ALL, {"run": run, "algo": args.algo, "task": args.task})


class Trainer:
    """The meta-training loop, its state (for checkpoints) and the final meta-test."""

    def __init__(self, args: TrainArgs, family: Family | None = None, run_name: str = "maml"):
        self.args = args
        if args.threads:
            torch.set_num_threads(args.threads)
        self.device = torch.device(args.device)
        self.family = family or build_family(args)
        torch.manual_seed(args.seed)
        self.model = self.family.make_model().to(self.device)
        f = self.family
        if args.algo == "reptile":
            self.learner = Reptile(self.model, f.loss_fn, f.metric_fn, args.inner_lr, args.inner_steps,
                                   args.meta_lr, args.iterations, args.ways if args.task == "fewshot" else 1,
                                   args.vmap_tasks)
        else:
            self.learner = MetaLearner(self.model, f.loss_fn, f.metric_fn, args.inner_lr, args.inner_steps,
                                       args.meta_lr, first_order=args.algo == "fomaml", vmap_tasks=args.vmap_tasks)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.iteration = 0
        self.train_wall_s = 0.0
        self.best: dict[str, Any] | None = None  # {"metric", "iteration", "params"}
        self.metrics = _metric_set(args, run_name)

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"learner": self.learner.state_dict(), "gen": self.gen.get_state(), "iteration": self.iteration,
                "train_wall_s": self.train_wall_s, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.gen.set_state(state["gen"])
        self.iteration, self.train_wall_s, self.best = state["iteration"], state["train_wall_s"], state["best"]

    # --- meta-training -------------------------------------------------------------------------
    def _to_device(self, batch):
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def sample(self, split: str, tasks: int, shots: int, queries: int, gen: torch.Generator):
        return self._to_device(self.family.sample(split, tasks, shots, queries, gen))

    def validate(self) -> float:
        a = self.args
        scores = evaluate(self._eval_family(), self.model, self.learner.params, split="val", tasks=a.val_tasks,
                          shots=a.shots, queries=a.eval_queries, lr=a.inner_lr, steps=(a.eval_steps,),
                          seed=a.seed + VAL_SEED)
        return scores[a.eval_steps].mean

    def _eval_family(self) -> Family:
        """The family whose sampler hands out batches on this trainer's device."""
        return dataclasses.replace(self.family, sample=self.sample)

    def run(self, on_validate: Callable[[dict[str, Any], bool], None] | None = None) -> None:
        """Meta-train up to ``args.iterations``; ``on_validate(report, is_last)`` after each validation."""
        a, f = self.args, self.family
        metric_key = f"val_{f.metric}"
        start, t_last, it_last = time.monotonic(), time.monotonic(), self.iteration
        wall_before = self.train_wall_s
        last_val = float("nan")
        with Progress(f"{a.algo} {a.task}", total=a.iterations, unit="meta-it", initial=self.iteration) as bar:
            while self.iteration < a.iterations:
                batch = self.sample("train", a.meta_batch, a.shots, a.queries, self.gen)
                stats = self.learner.step(batch)
                self.iteration += 1
                if self.metrics is not None:
                    self.metrics.inc(M.META_ITERATIONS)
                    self.metrics.inc(M.TASKS, a.meta_batch)
                    self.metrics.set(M.TRAIN_LOSS, stats["loss"])
                is_last = self.iteration == a.iterations
                if self.iteration % a.val_every == 0 or is_last:
                    last_val = self.validate()
                    if self.best is None or f.better(last_val, self.best["metric"]):
                        self.best = {"metric": last_val, "iteration": self.iteration,
                                     "params": {k: v.detach().cpu().clone() for k, v in self.learner.params.items()}}
                    now = time.monotonic()
                    self.train_wall_s = wall_before + now - start
                    rate = (self.iteration - it_last) / max(now - t_last, 1e-9)
                    t_last, it_last = now, self.iteration
                    if self.metrics is not None:
                        self.metrics.set(M.VAL_METRIC, last_val)
                        self.metrics.set(M.ITERATIONS_PER_SECOND, rate)
                    report = {metric_key: last_val, "meta_iteration": self.iteration, "train_loss": stats["loss"],
                              "train_metric": stats["metric"], "best_" + metric_key: self.best["metric"],
                              "meta_iterations_per_s": rate}
                    log.info("iteration %d: %s %.4f (best %.4f @ %d), %.1f meta-it/s", self.iteration, metric_key,
                             last_val, self.best["metric"], self.best["iteration"], rate)
                    if on_validate is not None:
                        on_validate(report, is_last)
                bar.update(self.iteration, loss=stats["loss"], **{metric_key: last_val})
        self.train_wall_s = wall_before + time.monotonic() - start

    def best_params(self) -> dict[str, torch.Tensor]:
        src = self.best["params"] if self.best is not None else self.learner.params
        return {k: v.detach().to(self.device) for k, v in src.items()}

    # --- meta-test -----------------------------------------------------------------------------
    def test(self, with_baselines: bool | None = None) -> dict[str, Any]:
        """Meta-test the best θ (and, optionally, the baselines) on args.eval_tasks held-out tasks."""
        a, f = self.args, self._eval_family()
        with_baselines = a.baselines if with_baselines is None else with_baselines
        sine = a.task == "sinusoid"
        shots_list = tuple(sorted({*SINE_SHOTS, a.shots})) if sine else (a.shots,)
        steps = tuple(sorted({*SINE_STEPS, a.eval_steps})) if sine else (a.eval_steps,)
        m = f.metric
        out: dict[str, Any] = {}

        def put(prefix: str, k: int, s: int, sc: Score) -> None:
            if sine and k in SINE_SHOTS and s in SINE_STEPS:
                out[f"{prefix}_{m}_k{k}_step{s}_mean"] = sc.mean
                out[f"{prefix}_{m}_k{k}_step{s}_ci95"] = sc.ci95
            if k == a.shots and s == a.eval_steps:
                out[f"{prefix}_mean"], out[f"{prefix}_ci95"] = sc.mean, sc.ci95

        grid = baselines.SINE_LR_GRID if sine else baselines.FEWSHOT_LR_GRID

        def score(name: str, model: torch.nn.Module, params: dict[str, torch.Tensor], lrs: tuple[float, ...]) -> None:
            """Pick the step size per step count on meta-val (if there is a choice), then meta-test."""
            t = time.monotonic()
            log.info("%s: choosing the step size among %d on %d meta-val tasks, then %d meta-test tasks",
                     name, len(lrs), a.baseline_val_tasks if len(lrs) > 1 else 0, a.eval_tasks)
            for k in shots_list:
                best = {s: lrs[0] for s in steps}
                if len(lrs) > 1:
                    best = baselines.tune_lr(f, model, params, grid=lrs, steps=steps, shots=k,
                                             queries=a.eval_queries, tasks=a.baseline_val_tasks, seed=a.seed + VAL_SEED)
                for lr in sorted(set(best.values())):
                    todo = tuple(s for s in steps if best[s] == lr)
                    scores = evaluate(f, model, params, split="test", tasks=a.eval_tasks, shots=k,
                                      queries=a.eval_queries, lr=lr, steps=todo, seed=a.seed + TEST_SEED)
                    for s, sc in scores.items():
                        put(name, k, s, sc)
                if k == a.shots:
                    out[f"{name}_lr"] = best[a.eval_steps]
            if f"{name}_mean" in out:
                log.info("%s: %s %.4f ± %.4f (%.0f s)", name, m, out[f"{name}_mean"], out[f"{name}_ci95"],
                         time.monotonic() - t)

        t0 = time.monotonic()
        meta_lrs = tuple(sorted({a.inner_lr, *grid})) if a.tune_eval_lr else (a.inner_lr,)
        score("meta_test", self.model, self.best_params(), meta_lrs)
        out["meta_test_tasks"] = a.eval_tasks
        out["meta_test_wall_s"] = time.monotonic() - t0
        if not with_baselines:
            return out
        t0 = time.monotonic()
        log.info("baselines: joint training for %d iterations", a.baseline_iterations)
        joint = baselines.pretrain_joint(f, iterations=a.baseline_iterations, meta_batch=a.meta_batch,
                                         shots=a.shots, queries=a.queries, lr=a.joint_lr, seed=a.seed,
                                         device=self.device)
        out["joint_train_wall_s"] = time.monotonic() - t0
        score("joint", *joint, grid)
        if not sine:
            t1 = time.monotonic()
            log.info("baselines: all-class transfer pre-training for %d iterations", a.baseline_iterations)
            transfer = baselines.pretrain_transfer(f, iterations=a.baseline_iterations, meta_batch=a.meta_batch,
                                                   shots=a.shots, queries=a.queries, ways=a.ways, lr=a.joint_lr,
                                                   seed=a.seed, channels=a.channels, device=self.device)
            out["transfer_train_wall_s"] = time.monotonic() - t1
            score("transfer", *transfer, grid)
        score("scratch", *baselines.scratch(f, a.seed, self.device), grid)
        out["baselines_wall_s"] = time.monotonic() - t0
        return out


def prepare_run_dir(args: TrainArgs) -> RunDir:
    """Check the run-dir against --resume before anything starts (ConfigError otherwise)."""
    run_dir = RunDir(args.run_dir).ensure_writable()
    has_ckpt = bool(checkpoint.list_steps(run_dir))
    if args.resume and not has_ckpt:
        raise ConfigError(f"--resume: no checkpoint in --run-dir {args.run_dir!r}")
    if not args.resume and has_ckpt:
        raise ConfigError(f"--run-dir {args.run_dir!r} already holds checkpoints: pass --resume or use a new run-dir")
    return run_dir


def train(args: TrainArgs) -> dict[str, Any]:
    """Run one meta-training job end to end; returns (and writes) result.json's content."""
    t0 = time.monotonic()
    run_dir = prepare_run_dir(args)
    run_dir.write_json("config.json", to_dict(args))
    trainer = Trainer(args, run_name=run_dir.root.rstrip("/").split("/")[-1])
    resumed_from = -1
    if args.resume:
        step, state = checkpoint.load_latest(run_dir)
        trainer.load_state_dict(state)
        resumed_from = step
        log.info("resumed from meta-iteration %d", step)

    def on_validate(report: dict[str, Any], is_last: bool) -> None:
        checkpoint.save(run_dir, trainer.iteration, trainer.state_dict(), keep=args.keep_checkpoints)

    trainer.run(on_validate)
    result: dict[str, Any] = {
        "algo": args.algo, "task": args.task, "ways": args.ways if args.task == "fewshot" else 0,
        "shots": args.shots, "metric": trainer.family.metric, "eval_steps": args.eval_steps,
        "meta_iterations": trainer.iteration, "inner_lr": args.inner_lr, "inner_steps": args.inner_steps,
        "meta_lr": args.meta_lr, "meta_batch": args.meta_batch,
        "best_val_metric": trainer.best["metric"], "best_val_iteration": trainer.best["iteration"],
        "train_wall_s": trainer.train_wall_s,
        "meta_iterations_per_s": trainer.iteration / max(trainer.train_wall_s, 1e-9),
        "resumed_from_iteration": resumed_from,
    }
    result.update(trainer.test())
    result["wall_s"] = time.monotonic() - t0
    buf = io.BytesIO()
    torch.save({"args": to_dict(args), "params": {k: v.cpu() for k, v in trainer.best_params().items()},
                "best_val_metric": trainer.best["metric"]}, buf)
    run_dir.write_bytes("model.pt", buf.getvalue())
    run_dir.write_json("result.json", result)
    keys = ("meta_test_mean", "meta_test_ci95", "joint_mean", "transfer_mean", "scratch_mean", "wall_s")
    log.info("done: %s", {k: result[k] for k in keys if k in result})
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    setup_logging()
    prog = "dojo maml train"
    args = parse(TrainArgs, argv, prog=prog)
    try:
        prepare_run_dir(args)  # fail fast
        if args.task == "fewshot":
            build_family(args)  # renders/loads the benchmark; a missing font package is a one-line error
    except ConfigError as exc:
        fail(prog, str(exc))
    if os.environ.get("RAY_ADDRESS"):  # under `ray job submit`: attach so the dojo_maml_* metrics export
        from services.common.ray_utils import init_ray

        init_ray()
    return train(args)


if __name__ == "__main__":
    main()
