"""The words the recogniser knows, the character alphabet its CTC head predicts, and transcripts.

Alphabet: index 0 is the CTC blank, 1 the space between words, 2..27 the letters a-z.
"""

from __future__ import annotations

import re

import numpy as np

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "oh")
COMMAND_WORDS = (
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "start", "cancel", "back", "next", "open", "close", "play", "pause", "help", "repeat",
    "select", "enter", "delete", "call", "home", "menu", "louder", "quieter", "faster", "slower",
)
VOCABULARY = DIGIT_WORDS + COMMAND_WORDS
# vocabularies the constrained beam search can be limited to (`?grammar=` on the endpoint)
GRAMMARS: dict[str, tuple[str, ...]] = {"all": VOCABULARY, "digits": DIGIT_WORDS, "commands": COMMAND_WORDS}

BLANK = 0
SPACE = 1
ALPHABET = "_ abcdefghijklmnopqrstuvwxyz"  # "_" stands for the blank
CHAR_TO_ID = {c: i for i, c in enumerate(ALPHABET) if i != BLANK}
N_CLASSES = len(ALPHABET)


def normalize(text: str) -> str:
    """Lower case, letters and single spaces only."""
    return " ".join(re.sub(r"[^a-z ]+", " ", text.lower()).split())


def encode(text: str) -> list[int]:
    """Transcript -> label ids (no blanks). Raises ValueError on characters outside the alphabet."""
    try:
        return [CHAR_TO_ID[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in the alphabet {ALPHABET[1:]!r}") from None


def decode(ids) -> str:
    """Label ids (no blanks) -> text."""
    return "".join(ALPHABET[int(i)] for i in ids if int(i) != BLANK)


def sample_transcript(rng: np.random.Generator) -> str:
    """A random utterance: a digit string (1-7 digits, 40 %), one to three commands (40 %), or a command and
    1-4 digits (20 %). Commands are rarer words than digits, so they get as many utterances."""
    kind = rng.choice(3, p=[0.4, 0.4, 0.2])
    if kind == 0:
        words = rng.choice(DIGIT_WORDS, size=int(rng.integers(1, 8))).tolist()
    elif kind == 1:
        words = rng.choice(COMMAND_WORDS, size=int(rng.integers(1, 4))).tolist()
    else:
        words = [str(rng.choice(COMMAND_WORDS))] + rng.choice(DIGIT_WORDS, size=int(rng.integers(1, 5))).tolist()
    return " ".join(words)
