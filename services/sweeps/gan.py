"""``dojo sweep gan``: Ray Tune over a GAN model's typed config, optimising its quality metric.

Each trial rebuilds the model's own ``Args`` dataclass from the trial config
(``services.common.config.rebuild``: an unknown key or a bad value fails loudly), trains
``--max-iters`` iterations of ``--steps-per-iter`` updates and reports the model's quality
metric (FD for dcgan/wgan/wgan-gp, conditional accuracy for cgan, held-out L1 for pix2pix,
cycle-reconstruction L1 for cyclegan) with a checkpoint (state + sample grid) every iteration.
Schedulers: ASHA (early-stops poor trials) and none run through the shared runner
``services.sweeps.tune_runner.run_sweep``; PBT (exploits good trials' checkpoints and
perturbs lr / betas / λ) is added here, since the shared runner has no PBT. ``--resume``
continues an interrupted sweep with ``Tuner.restore``. ``result.json``: best_config, best_metric, worst_metric, metric_name,
metric, mode, trials, wall_s; ``best_samples.png`` is the best trial's sample grid.

Every configuration of the search space's corners is validated before Ray starts, so a bad
bound (negative lr, n_critic 0, unknown model) exits 2 with one line and no trial runs.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch

from services.common.config import ConfigError, fail, parse, rebuild, require
from services.common.progress import setup_logging
from services.common.rundir import RunDir

PROG = "dojo sweep gan"
MODELS = ("dcgan", "wgan", "wgan-gp", "cgan", "pix2pix", "cyclegan")


@dataclasses.dataclass
class SweepArgs:
    """Ray Tune sweep over one GAN model's config, reporting its quality metric every iteration."""

    model: Literal["dcgan", "wgan", "wgan-gp", "cgan", "pix2pix", "cyclegan"] = "dcgan"
    """Which model to sweep."""
    scheduler: Literal["asha", "pbt", "none"] = "asha"
    """asha: successive halving stops poor trials early; pbt: population-based training; none: FIFO."""
    num_samples: int = 4
    """Number of trials (configurations drawn from the search space)."""
    max_iters: int = 10
    """Iterations per trial (each: --steps-per-iter updates, an evaluation, a checkpoint)."""
    run_dir: str = "runs/sweep-gan"
    """Where result.json, best_samples.png and Tune's experiment folder (tune/) go (a local path)."""
    data: Literal["mnist", "fashion"] = "mnist"
    """Data set."""
    steps_per_iter: int = 25
    """Generator updates per iteration."""
    batch_size: int = 64
    """Minibatch size."""
    eval_samples: int = 500
    """Images per evaluation."""
    lr_min: float = 2e-5
    """Lower bound of the log-uniform learning-rate range."""
    lr_max: float = 2e-3
    """Upper bound of the log-uniform learning-rate range."""
    beta1: tuple[float, ...] = (0.0, 0.5)
    """Adam β1 choices."""
    n_critic: tuple[int, ...] = (1, 3, 5)
    """n_critic choices (wgan, wgan-gp)."""
    gp_lambda: tuple[float, ...] = (1.0, 10.0)
    """Gradient-penalty λ choices (wgan-gp)."""
    l1_lambda: tuple[float, ...] = (10.0, 100.0)
    """L1 λ choices (pix2pix)."""
    lambda_cyc: tuple[float, ...] = (5.0, 10.0)
    """λ_cyc choices (cyclegan; λ_id = λ_cyc / 2)."""
    grace_period: int = 2
    """ASHA: iterations every trial runs before it can be stopped."""
    reduction_factor: int = 2
    """ASHA: keep the best 1/reduction_factor of the trials at each rung."""
    perturbation_interval: int = 2
    """PBT: iterations between exploit/explore steps."""
    cpus_per_trial: float = 1.0
    """Logical CPUs reserved per trial."""
    gpus_per_trial: float = 0.0
    """GPUs reserved per trial (fractions allowed); a trial's models then compute on CUDA (--device auto)."""
    max_concurrent: int = 0
    """Trials running at once (0 = as many as the resources allow)."""
    seed: int = 0
    """Seed of the search and of every trial's model."""
    resume: bool = False
    """Continue the interrupted sweep in --run-dir (Tuner.restore)."""
    auto_resume: bool = False
    """Resume when --run-dir already holds a sweep and start afresh when it holds none, so the same command can
    simply be run again after a crash (the Helm chart's RayJobs pass it: a retried job resumes)."""

    def validate(self) -> None:
        require(self.num_samples >= 1, f"--num-samples must be >= 1 (got {self.num_samples})")
        require(self.max_iters >= 1, f"--max-iters must be >= 1 (got {self.max_iters})")
        require(self.lr_min > 0 and math.isfinite(self.lr_min), f"--lr-min must be > 0 (got {self.lr_min})")
        require(self.lr_max >= self.lr_min, f"--lr-max must be >= --lr-min (got {self.lr_max} < {self.lr_min})")
        require(self.cpus_per_trial > 0, f"--cpus-per-trial must be > 0 (got {self.cpus_per_trial})")
        require(self.gpus_per_trial >= 0, f"--gpus-per-trial must be >= 0 (got {self.gpus_per_trial})")
        require(self.grace_period >= 1, f"--grace-period must be >= 1 (got {self.grace_period})")
        require(self.reduction_factor >= 2, f"--reduction-factor must be >= 2 (got {self.reduction_factor})")
        require(self.perturbation_interval >= 1, "--perturbation-interval must be >= 1")
        require(self.max_concurrent >= 0, f"--max-concurrent must be >= 0 (got {self.max_concurrent})")
        for name in ("beta1", "n_critic", "gp_lambda", "l1_lambda", "lambda_cyc"):
            require(len(getattr(self, name)) >= 1, f"--{name.replace('_', '-')} needs at least one value")
        require("://" not in self.run_dir, "--run-dir must be a local path for sweeps")
        # every corner of the space must build a valid model config: fail before Ray starts
        for cfg in corners(self):
            try:
                rebuild(args_class(self.model), {**base_config(self), **cfg})
            except ConfigError as exc:
                raise ConfigError(f"search space for {self.model}: {exc}") from exc


def args_class(model: str) -> type:
    from services.gan.train import args_class as cls

    return cls(model)


def base_config(a: SweepArgs) -> dict[str, Any]:
    """The fixed (not searched) fields of every trial's model Args."""
    return {"data": a.data, "iters": a.max_iters, "steps_per_iter": a.steps_per_iter, "batch_size": a.batch_size,
            "eval_samples": a.eval_samples, "seed": a.seed, "threads": 1}


def _choices(a: SweepArgs) -> dict[str, tuple]:
    """The model-specific categorical dimensions of the search space."""
    c: dict[str, tuple] = {"beta1": a.beta1}
    if a.model in ("wgan", "wgan-gp"):
        c["n_critic"] = a.n_critic
    if a.model == "wgan":
        c.pop("beta1")  # RMSProp: no betas
    if a.model == "wgan-gp":
        c["gp_lambda"] = a.gp_lambda
    if a.model == "pix2pix":
        c["l1_lambda"] = a.l1_lambda
    if a.model == "cyclegan":
        c["lambda_cyc"] = a.lambda_cyc
    return c


def corners(a: SweepArgs) -> list[dict[str, Any]]:
    """Extreme points of the space (each choice list's min and max, both lr bounds)."""
    out = []
    for lr in (a.lr_min, a.lr_max):
        for pick in (min, max):
            cfg = {"lr": lr, **{k: pick(v) for k, v in _choices(a).items()}}
            if "lambda_cyc" in cfg:
                cfg["lambda_id"] = cfg["lambda_cyc"] / 2
            out.append(cfg)
    return out


def search_space(a: SweepArgs) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {"lr": tune.loguniform(a.lr_min, a.lr_max)}
    space.update({k: tune.choice(list(v)) for k, v in _choices(a).items()})
    if a.model == "cyclegan":
        space["lambda_id"] = tune.sample_from(lambda spec: spec.config.lambda_cyc / 2)
    return space


def make_trainable(model: str):
    """The Tune function trainable of one model: rebuild its Args, train, report every iteration."""

    def gan_trial(config: dict[str, Any]) -> None:
        from services.gan.base import grid_png, run_iteration
        from services.gan.train import model_module
        from services.sweeps.tune_runner import report, restore_state, trial_args

        torch.set_num_threads(1)
        args = trial_args(args_class(model), config)
        net = model_module(model).Model(args)
        start = 0
        if (state := restore_state()) is not None:
            net.load_state_dict(state["model"])
            start = state["iter"]
            for opt in (net.opt_g, net.opt_d):  # PBT may have perturbed lr: the trial config wins
                for g in opt.param_groups:
                    g["lr"] = args.lr
        for it in range(start, args.iters):
            losses = run_iteration(net, args.steps_per_iter)
            metrics = net.evaluate()
            report({**metrics, **losses, "iter": it + 1},
                   {"model": net.state_dict(), "iter": it + 1, "samples_png": grid_png(net.samples())})

    gan_trial.__name__ = gan_trial.__qualname__ = f"gan_{model.replace('-', '_')}"
    return gan_trial


def _scheduler(a: SweepArgs, metric: str, mode: str):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if a.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", metric=metric, mode=mode, max_t=a.max_iters,
                             grace_period=min(a.grace_period, a.max_iters), reduction_factor=2)
    if a.scheduler == "pbt":
        mutations: dict[str, Any] = {"lr": tune.loguniform(a.lr_min, a.lr_max)}
        mutations.update({k: list(v) for k, v in _choices(a).items() if k not in ("n_critic",)})
        mutations.pop("lambda_cyc", None)  # keep lambda_id = lambda_cyc / 2 consistent
        return PopulationBasedTraining(time_attr="training_iteration", metric=metric, mode=mode,
                                       perturbation_interval=a.perturbation_interval,
                                       hyperparam_mutations=mutations, seed=a.seed)
    return FIFOScheduler()


def _pbt(a: SweepArgs, spec, run_dir: RunDir) -> None:
    """PBT through Tune directly (the shared runner offers ASHA and none)."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from services.sweeps.tune_runner import EXPERIMENT, KEEP_CHECKPOINTS, experiment_path

    fn = tune.with_resources(spec.trainable, {"cpu": a.cpus_per_trial, "gpu": a.gpus_per_trial})
    if a.resume:
        tuner = tune.Tuner.restore(experiment_path(run_dir), fn, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(fn, param_space=spec.param_space, tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, num_samples=a.num_samples, scheduler=_scheduler(a, spec.metric, spec.mode),
            max_concurrent_trials=a.max_concurrent or None, search_alg=BasicVariantGenerator(random_state=a.seed)),
            run_config=tune.RunConfig(name=EXPERIMENT, storage_path=run_dir.root,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                                      verbose=1))
    tuner.fit()


def sweep(a: SweepArgs) -> dict[str, Any]:
    from ray import tune

    from services.common.ray_utils import init_ray, shutdown_ray_if_local
    from services.gan.train import metric_label, model_module
    from services.sweeps.tune_runner import SweepSpec, check_resume, experiment_path, run_sweep

    mod = model_module(a.model)
    metric, mode = mod.METRIC, mod.MODE
    run_dir = RunDir(a.run_dir)
    check_resume(run_dir, a)
    run_dir.ensure_writable()
    spec = SweepSpec(family="gan", trainable=make_trainable(a.model),
                     param_space={**base_config(a), **search_space(a)}, metric=metric, mode=mode,
                     max_t=a.max_iters)
    init_ray()
    t0 = time.time()
    try:
        if a.scheduler == "pbt":
            _pbt(a, spec, run_dir)
            shared: dict[str, Any] = {}
        else:
            shared = run_sweep(spec, a, run_dir, a.resume)
        wall = time.time() - t0
        grid = tune.Tuner.restore(experiment_path(run_dir), spec.trainable).get_results()
        scored = [r for r in grid if r.metrics_dataframe is not None and metric in r.metrics_dataframe]
        if not scored:
            raise RuntimeError(f"no trial reported {metric}: {[str(r.error) for r in grid if r.error][:1]}")

        def best_of(r) -> float:  # a trial's score = its best reported value over all iterations
            col = r.metrics_dataframe[metric]
            return float(col.min() if mode == "min" else col.max())

        ranked = sorted(scored, key=lambda r: best_of(r) if mode == "min" else -best_of(r))
        best, worst = ranked[0], ranked[-1]
        if (ckpt := best.get_best_checkpoint(metric, mode) or best.checkpoint) is not None:
            with ckpt.as_directory() as d:
                state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=False)
            run_dir.write_bytes("best_samples.png", state["samples_png"])
        searched = set(search_space(a))
        result = {
            **shared, "model": a.model, "scheduler": a.scheduler, "metric_name": metric_label(a.model, a.data),
            "metric": metric, "mode": mode, "best_metric": best_of(best), "worst_metric": best_of(worst),
            "best_config": {k: v for k, v in best.config.items() if k in searched},
            "trials": len(grid), "trials_with_metric": len(scored),
            "iterations": int(sum(len(r.metrics_dataframe) for r in scored)), "wall_s": wall,
        }
        run_dir.write_json("result.json", result)
    finally:
        shutdown_ray_if_local()
    return result


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(SweepArgs, argv, PROG)
    setup_logging()
    try:
        result = sweep(args)
    except ConfigError as exc:
        fail(PROG, str(exc))
    except RuntimeError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"sweep {args.model}: best {result['metric_name']} = {result['best_metric']:.4g} "
          f"(worst {result['worst_metric']:.4g}) over {result['trials']} trials in {result['wall_s']:.0f} s "
          f"-> {args.run_dir}/result.json")


if __name__ == "__main__":
    main()
