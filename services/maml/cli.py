"""`dojo maml <verb>`."""

from services.maml import train

COMMANDS = {
    "train": (train.main, "meta-train MAML / first-order MAML / Reptile, meta-test against baselines"),
}
