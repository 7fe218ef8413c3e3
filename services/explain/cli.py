"""`dojo explain <verb>` (each verb imports its module only when it runs)."""


def _train(argv: list[str]) -> None:
    from services.explain import train

    train.main(argv)


def _eval(argv: list[str]) -> None:
    from services.explain import evaluate

    evaluate.main(argv)


COMMANDS = {
    "train": (_train, "train the GAP CNNs (MNIST, Fashion-MNIST) and the tabular MLP that are explained"),
    "eval": (_eval, "deletion/insertion AUC vs random and the model-randomisation check, per method"),
}
