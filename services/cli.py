"""The `dojo` command: ``dojo <area> <verb> [--flags]``.

Each area is a module ``services.<package>.cli`` with a ``COMMANDS`` dict
{verb: (main(argv), one-line help)}. Areas are imported lazily, so `dojo a3c ...`
never pays for importing the ASR or GAN code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

AREAS = {
    "a3c": ("services.a3c.cli", "asynchronous advantage actor-critic (A3C / A2C) on Ray"),
    "asr": ("services.asr.cli", "speech recognition: corpus, training, evaluation"),
    "explain": ("services.explain.cli", "explainability models and evaluation"),
    "gan": ("services.gan.cli", "GAN family: DCGAN, WGAN(-GP), CGAN, Pix2Pix, CycleGAN"),
    "maml": ("services.maml.cli", "meta-learning: MAML, first-order MAML, Reptile"),
    "sweep": ("services.sweeps.cli", "Ray Tune sweeps (GAN and MAML families)"),
    "metric": ("services.metric.cli", "deep metric learning: Siamese and Triplet networks"),
    "gcn": ("services.gcn.cli", "graph convolution networks"),
    "serve": ("services.serve.cli", "the Ray Serve application"),
    "dashboards": ("services.platform.cli", "Grafana dashboards: `dojo dashboards render`"),
}
# whole-platform commands without a verb: `dojo up`, `dojo down`
TOP_LEVEL = {
    "up": ("services.platform.up", "up_main", "start Ray, the Serve app, an A3C job and Prometheus here"),
    "down": ("services.platform.up", "down_main", "stop what `dojo up` started"),
}


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is not there (yet)
        return False


def _available() -> dict[str, tuple[str, str]]:
    return {a: v for a, v in AREAS.items() if _exists(v[0])}


def _usage(areas: dict[str, tuple[str, str]]) -> str:
    lines = ["usage: dojo <area> <verb> [--flags]   (dojo <area> --help lists the verbs)", "", "areas:"]
    lines += [f"  {a:<10} {h}" for a, (_, h) in areas.items()]
    lines += ["", "platform:"] + [f"  {c:<10} {h}" for c, (_, _, h) in TOP_LEVEL.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    areas = _available()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(areas))
        raise SystemExit(0 if argv else 2)
    area, rest = argv[0], argv[1:]
    if area in TOP_LEVEL:
        module, func, _ = TOP_LEVEL[area]
        getattr(importlib.import_module(module), func)(rest)
        return
    if area not in areas:
        print(f"dojo: error: unknown area {area!r} (choose from {', '.join(areas)})", file=sys.stderr)
        raise SystemExit(2)
    commands = importlib.import_module(areas[area][0]).COMMANDS
    if not rest or rest[0] in ("-h", "--help"):
        print(f"usage: dojo {area} <verb> [--flags]\n\nverbs:")
        for verb, (_, h) in commands.items():
            print(f"  {verb:<10} {h}")
        raise SystemExit(0 if rest else 2)
    verb = rest[0]
    if verb not in commands:
        print(f"dojo {area}: error: unknown verb {verb!r} (choose from {', '.join(commands)})", file=sys.stderr)
        raise SystemExit(2)
    commands[verb][0](rest[1:])


if __name__ == "__main__":
    main()
