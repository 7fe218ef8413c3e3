"""`dojo asr <verb>`."""

from services.asr import data, evaluate, train

COMMANDS = {
    "data": (data.main, "synthesise the corpus (espeak-ng, flite) into <run-dir>/data"),
    "train": (train.main, "train the CTC recogniser (renders the corpus first if needed)"),
    "eval": (evaluate.main, "WER/CER on held-out voices and another synthesiser, real-time factor"),
}
