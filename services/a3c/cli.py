"""`dojo a3c <verb>`."""

from services.a3c import evaluate, train

COMMANDS = {
    "train": (train.main, "train with asynchronous (A3C) or synchronous (A2C) workers"),
    "eval": (evaluate.main, "greedy evaluation of a trained run"),
}
