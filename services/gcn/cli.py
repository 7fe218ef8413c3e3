"""`dojo gcn <verb>`."""

from services.gcn import sweep, train

COMMANDS = {
    "train": (train.main, "semi-supervised node classification (karate club, SBM) with a GCN vs an MLP"),
    "sweep": (sweep.main, "Ray Tune sweep over the GCN's hyper-parameters"),
}
