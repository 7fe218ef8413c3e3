"""`dojo metric <verb>`."""

from services.metric import evaluate, train

COMMANDS = {
    "train": (train.main, "train a Siamese (contrastive) or Triplet network on MNIST / Fashion-MNIST"),
    "eval": (evaluate.main, "Recall@1, MAP@R and kNN accuracy of a trained embedding on held-out data"),
}
