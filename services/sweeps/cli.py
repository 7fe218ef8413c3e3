"""`dojo sweep <family>`: each family module has a ``main(argv)``; the Tune plumbing they share
lives in ``services.sweeps.tune_runner``."""

from __future__ import annotations

import sys


def _maml(argv: list[str] | None = None):
    from services.sweeps import maml

    return maml.main(argv)


def _gan(argv: list[str] | None = None):
    from services.sweeps import gan

    return gan.main(argv)


COMMANDS = {
    "maml": (_maml, "Ray Tune sweep of MAML / first-order MAML / Reptile (inner lr, steps, meta lr, meta-batch)"),
    "gan": (_gan, "Ray Tune sweep of a GAN model (dcgan|wgan|wgan-gp|cgan|pix2pix|cyclegan; asha|pbt|none)"),
}


def main(argv: list[str] | None = None) -> None:
    """``python -m services.sweeps.cli <family> [--flags]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m services.sweeps.cli {{{','.join(COMMANDS)}}} [--flags]", file=sys.stderr)
        raise SystemExit(2)
    COMMANDS[argv[0]][0](argv[1:])


if __name__ == "__main__":
    main()
