"""The speech corpus, synthesised offline and deterministically from a seed.

Three engines, all Debian packages:
  * espeak-ng (formant synthesis; 8 English accents × ~100 voice variants), called through
    libespeak-ng with ctypes, each shard in a forked child whose library starts fresh: most of the
    training and validation sets, and the held-out test set; 15 % of its training utterances are
    read by voices of six other languages from the vocabulary respelt in their orthography (English
    with a foreign accent);
  * festival with the ked diphone voice (festvox-kdlpc16k, a US male speaker recorded for
    residual-excited LPC diphone synthesis): a share of the training and validation sets, each
    utterance with its own duration stretch, F0 mean and range, and a resampling "speaker warp"
    (pitch and formants scaled together) so that one recorded speaker becomes many; and with the
    Catalan female HTS voice ona (festvox-ca-ona-hts, statistical-parametric speech from a recorded
    woman), reading the vocabulary written in Catalan spelling: English with a Catalan accent;
  * flite (CMU diphone and clustergen voices kal, kal16, awb, rms, slt), never used in training:
    the "other synthesiser" test set.

Held-out voices are fixed (not seeded): two accents and every fifth variant never appear in
training; the test set draws from them evenly in three categories (unseen accent, unseen variant,
both unseen). Every utterance varies speed, pitch, pitch range and word gap; a share of the
training utterances is band-limited (an 8 or 11.025 kHz source); then each gets silence padding,
optional reverberation (a synthetic exponentially decaying room response), optional
noise (white, pink, brown, hum or babble of other voices) at a random SNR and a random level,
and is resampled to 16 kHz mono.

``build`` renders a split with Ray tasks (one shard per task) and stores the log-mel features
(float16) with transcripts and metadata as ``data/<split>.npz`` in the run-dir; ``ensure``
reuses a cached split when its plan (seed, sizes, code version) is unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.fft import next_fast_len
from scipy.signal import fftconvolve

from services.asr.audio import SAMPLE_RATE, resample
from services.asr.text import COMMAND_WORDS, DIGIT_WORDS, sample_transcript
from services.common.config import ConfigError
from services.common.progress import Progress, log
from services.common.rundir import RunDir

CORPUS_VERSION = 3  # bump when the plans change (it seeds them), so cached splits are rebuilt
RENDER_REVISION = 2  # bump when rendering changes and the plans do not (2: espeak-ng from a fresh library per shard)
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
HELD_OUT_ACCENTS = ("en-gb-x-gbcwmd", "en-029")
FESTIVAL_VOICE = "ked_diphone"  # none of flite's test speakers (kal, awb, rms, slt)
RECORDED_SHARE = 0.25  # of the training and validation utterances: voices of recorded speakers (festival, pico)
# the second festival voice: a woman, statistical-parametric (HTS) synthesis like flite's clustergen voices, but
# Catalan: it reads the vocabulary spelt the Catalan way (English with a Catalan accent)
ONA_VOICE = "upc_ca_ona_hts"
ONA_SHARE = 0.3  # of the festival utterances
# The vocabulary respelt in other languages' orthographies, so that their voices read English with their accent
# (ca: Catalan, es: Spanish, it: Italian, cs: Czech, de: German).
_RESPELT = """
word     ca        es        it        cs       de
zero     zírou     sírou     zirou     zírou    sierou
one      uan       uan       uan       uan      wann
two      tu        tu        tu        tú       tuh
three    trí       trí       tri       trí      srih
four     for       for       for       fór      fohr
five     fàiv      fáif      faiv      fajf     feif
six      sics      siks      sics      siks     sicks
seven    séven     séven     seven     sevn     sewwen
eight    eit       éit       eit       ejt      eit
nine     nàin      náin      nain      najn     nein
oh       ou        óu        ou        ou       ou
yes      iés       iés       ies       jes      jess
no       nou       nóu       nou       nou      nou
up       ap        ap        ap        ap       app
down     dàun      dáun      daun      daun     daun
left     left      left      left      left     left
right    ràit      ráit      rait      rajt     reit
on       on        on        on        on       onn
off      of        of        of        of       off
stop     stop      stop      stop      stop     stopp
go       gou       góu       gou       gou      gou
start    start     start     start     start    start
cancel   càncel    kánsel    chènsel   kensl    kännsel
back     bac       bak       bec       bek      bäck
next     necst     nekst     necst     nekst    nekst
open     óupen     óupen     oupen     oupn     oupen
close    clous     klóus     clous     klous    klous
play     plei      pléi      plei      plej     plei
pause    pos       pos       pos       póz      pohs
help     jelp      jelp      elp       help     help
repeat   ripít     ripít     ripit     ripít    ripiet
select   silèct    silékt    silect    silekt   selekt
enter    ènter     énter     enter     entr     enter
delete   dilít     dilít     dilit     dilít    diliet
call     col       kol       col       kól      kohl
home     jóum      jóum      oum       houm     houm
menu     méniu     méniu     meniu     menjú    menju
louder   làuder    láuder    lauder    laudr    lauder
quieter  cuaièter  kuáieter  cuaieter  kvajetr  kwaieter
faster   fàster    fáster    faster    fástr    faster
slower   slóuer    slóuer    slouer    slouer   slouer
"""
_ROWS = [line.split() for line in _RESPELT.strip().splitlines()]
SPELLINGS = {lang: {row[0]: row[i] for row in _ROWS[1:]} for i, lang in enumerate(_ROWS[0][1:], 1)}
# espeak-ng voices of other languages reading the vocabulary in their own spelling: English with a foreign accent,
# from the same formant synthesiser (and voice variants) as the held-out test voices
FOREIGN_ACCENTS = {**SPELLINGS, "sk": SPELLINGS["cs"]}  # Slovak reads the Czech respelling
FOREIGN_SHARE = 0.15  # of the espeak-ng training and validation utterances


def spoken(u: Utterance) -> str:
    """The text the synthesiser reads for ``u``: its transcript, respelt for a voice of another language."""
    if u.engine == "festival":
        spelling = FESTIVAL_VOICES[u.voice].spelling
    elif u.engine == "espeak":
        spelling = FOREIGN_ACCENTS.get(u.voice.partition("+")[0])
    else:
        spelling = None
    return " ".join(spelling[w] for w in u.text.split()) if spelling else u.text


@dataclasses.dataclass(frozen=True)
class FestivalVoice:
    """How the corpus uses a festival voice."""

    language: str  # its directory under /usr/share/festival/voices
    warp: tuple[float, float]  # speaker warp range (the waveform read at warp × its rate)
    spelling: dict[str, str] | None = None  # vocabulary word -> text in the voice's language (None: English)
    prosody: bool = False  # takes each utterance's duration stretch and F0 targets


FESTIVAL_VOICES = {
    FESTIVAL_VOICE: FestivalVoice("english", (0.85, 1.4), prosody=True),  # a man, up to a child-like voice
    ONA_VOICE: FestivalVoice("catalan", (0.8, 1.15), SPELLINGS["ca"]),  # a woman, down to a man-like voice
}
# SVOX Pico (PyPI ttspico, its voice data inside the package; the `pico` extra): an optional third training
# synthesiser, statistical-parametric (HMM) voices of two women recorded reading English, US and British. Neither is
# one of flite's test speakers. `--pico-share` gives them that share of the RECORDED_SHARE, in festival's place.
PICO_VOICES = {"en-US": (0.8, 1.15), "en-GB": (0.8, 1.15)}  # speaker warp range: down to man-like voices
NARROWBAND_SHARE = 0.15  # of the training and validation utterances: band-limited like an 8 or 11.025 kHz source
NARROWBAND_RATES = (8000, 11025)
FLITE_VOICES = {"kal": (85, 140), "kal16": (85, 140), "awb": (85, 140), "rms": (80, 130), "slt": (150, 220)}
SPLITS = ("train", "val", "test", "other")
# default utterances per split, shared by `dojo asr data`, `train` and `eval` (so each finds the others' cache);
# 3 000 test utterances (about 11 000 words) put a WER near 6 % within about ±0.2 points, 600 left it ±0.5
DEFAULT_SIZES = {"train": 16_000, "val": 300, "test": 3_000, "other": 1_000}
NOISES = ("white", "pink", "brown", "hum", "babble")


class SynthesizerMissing(RuntimeError):
    """A Debian speech synthesiser is not installed; the message names the package."""


# --- espeak-ng in-process ------------------------------------------------------------------------
class _Espeak:
    """libespeak-ng through ctypes (synchronous mode: samples arrive through a callback)."""

    RATE, VOLUME, PITCH, RANGE, WORDGAP = 1, 2, 3, 4, 7
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self):
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError:
            raise SynthesizerMissing("espeak-ng is not installed: apt-get install espeak-ng") from None
        self.chunks: list[np.ndarray] = []
        self.synthesised_in = 0  # the pid of the last process that synthesised with this library

        def collect(wav, n, _events):
            if n > 0:
                self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._cb = self._CALLBACK(collect)  # keep a reference: the library calls it later
        self.rate = self.lib.espeak_Initialize(2, 0, None, 0)  # 2 = AUDIO_OUTPUT_SYNCHRONOUS
        if self.rate <= 0:
            raise SynthesizerMissing("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self.lib.espeak_SetSynthCallback(self._cb)

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, gap: int) -> np.ndarray:
        """One utterance's samples. The library keeps state from one synthesis to the next (see ``espeak_batch``):
        call this in a child of ``espeak_batch``, not in a process that renders corpora."""
        self.synthesised_in = os.getpid()
        self.chunks = []
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((self.RATE, rate), (self.VOLUME, 100), (self.PITCH, pitch),
                             (self.RANGE, pitch_range), (self.WORDGAP, gap)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        data = text.encode() + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, 1, 0, 0, None, None)  # 1 = POS_CHARACTER
        self.lib.espeak_Synchronize()
        wav = np.concatenate(self.chunks) if self.chunks else np.zeros(1, np.int16)
        return wav.astype(np.float32) / 32768.0


class SynthesisCrash(RuntimeError):
    """A synthesiser's C library crashed (in a child process, so the caller survived)."""


def isolated(fn, *args) -> np.ndarray:
    """``fn(*args)`` (a float32 array) computed in a forked child, so that a crash in a C library raises
    ``SynthesisCrash`` here instead of killing this process. About 16 ms a call in a process with torch loaded."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, write length + bytes, exit without running any cleanup
        try:
            os.close(r)
            data = memoryview(np.ascontiguousarray(fn(*args), np.float32).tobytes())
            os.write(w, len(data).to_bytes(8, "little"))
            while data:
                data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        data = f.read(n) if n >= 0 else b""
    _, status = os.waitpid(pid, 0)
    if n < 0 or len(data) != n or os.WIFSIGNALED(status):
        raise SynthesisCrash(f"{getattr(fn, '__qualname__', fn)}{args!r} crashed"
                             f" (signal {os.WTERMSIG(status) if os.WIFSIGNALED(status) else 'none'})")
    return np.frombuffer(data, np.float32).copy()


EspeakCall = tuple[str, str, int, int, int, int]  # text, voice, rate, pitch, pitch range, word gap


def _synth_all(calls: list[EspeakCall]) -> np.ndarray:
    """(In ``espeak_batch``'s child.) Every call's samples in order, packed: the n lengths, then the samples."""
    e = espeak()
    ctypes.CDLL(None).srand(1)  # its breath and Klatt noise come from libc's rand(), whose state forks inherit
    out = [e.synth(*c) for c in calls]
    return np.concatenate([np.asarray([len(x) for x in out], np.float32), *out])


def espeak_batch(calls: list[EspeakCall]) -> list[np.ndarray]:
    """The samples (at ``espeak().rate``) of each ``(text, voice, rate, pitch, pitch range, word gap)``, synthesised
    in order in one forked child process whose libespeak-ng has never synthesised anything.

    libespeak-ng carries state from one synthesis to the next in variables no API resets (e.g. the pitch
    flutter's phase, a function-static counter in wavegen.c): the same call gives other samples after another
    history. Rendered twice in a row in one process, 24 of 30 test utterances came out different; a seed-0 test
    set rendered by workers that had rendered training shards first differed from a fresh rendering in 531 of
    600 utterances, and the committed model scored 6.1 % WER on one and 5.4 % on the other. A fresh library per
    batch makes the samples a function of the batch alone, whichever process renders it and whatever it rendered
    before; a crash of the library (see ``espeak_synth``) raises ``SynthesisCrash`` here.
    """
    if not calls:
        return []
    if espeak().synthesised_in == os.getpid():  # (initialised here, once: the children inherit it)
        raise RuntimeError("libespeak-ng has synthesised in this process, so a forked child would not start fresh: "
                           "synthesise only through espeak_batch")
    flat = isolated(_synth_all, calls)
    lengths = flat[:len(calls)].astype(np.int64)
    return np.split(flat[len(calls):], np.cumsum(lengths)[:-1])


def espeak_call(u: Utterance) -> EspeakCall:
    return spoken(u), u.voice, int(u.rate), int(u.pitch), int(u.pitch_range), int(u.gap)


def espeak_synth(u: Utterance) -> np.ndarray:
    """An espeak-ng utterance's samples at ``espeak().rate``, synthesised alone (``espeak_batch``).

    libespeak-ng 1.51 segfaults on some prosody settings, e.g. the ``Demonic`` and ``rob`` variants with a low pitch
    and a pitch range near 90 (voice ``en-us-nyc+Demonic``, "four oh seven one", rate 175, pitch 15, range 86, word
    gap 8). The crash kills only the child; a crashing utterance is synthesised again with its pitch range halved
    towards 20 (deterministically), so a corpus never fails on such an utterance."""
    text, voice, rate, pitch, pitch_range, gap = espeak_call(u)
    for _ in range(4):
        try:
            return espeak_batch([(text, voice, rate, pitch, pitch_range, gap)])[0]
        except SynthesisCrash:
            tamer = 20 + (pitch_range - 20) // 2
            log.warning("asr data: espeak-ng crashed on %s %r (pitch %d, range %d); range %d instead", voice,
                        text, pitch, pitch_range, tamer)
            pitch_range = tamer
    raise SynthesisCrash(f"espeak-ng crashes on voice {voice!r} reading {text!r} at every pitch range tried")


_ESPEAK: _Espeak | None = None


def espeak() -> _Espeak:
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = _Espeak()
    return _ESPEAK


def espeak_variants() -> tuple[str, ...]:
    """Voice variants shipped with espeak-ng-data (file names in voices/!v), sorted."""
    for root in ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
                 "/usr/share/espeak-ng-data", "/usr/local/share/espeak-ng-data"):
        d = Path(root) / "voices" / "!v"
        if d.is_dir():
            return tuple(sorted(p.name for p in d.iterdir() if p.is_file() and " " not in p.name))
    raise SynthesizerMissing("espeak-ng-data voice variants not found: apt-get install espeak-ng")


def voice_split() -> dict[str, tuple[str, ...]]:
    """Fixed train / held-out accents and variants ("" = the accent's default voice, always seen)."""
    variants = espeak_variants()
    held = variants[2::5]
    return {
        "train_accents": tuple(a for a in ACCENTS if a not in HELD_OUT_ACCENTS),
        "test_accents": HELD_OUT_ACCENTS,
        "train_variants": ("",) + tuple(v for v in variants if v not in held),
        "test_variants": held,
    }


# --- flite (the other synthesiser) ------------------------------------------------------------------
def flite_synth(text: str, voice: str, stretch: float, f0: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    exe = shutil.which("flite")
    if exe is None:
        raise SynthesizerMissing("flite is not installed: apt-get install flite")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "u.wav")
        subprocess.run([exe, "-voice", voice, "-t", text, "-o", out, "--setf", f"duration_stretch={stretch:.3f}",
                        "--setf", f"int_f0_target_mean={f0:.1f}"], check=True, capture_output=True, timeout=60)
        x, rate = sf.read(out, dtype="float32")
    return x, rate


def pico_synth(u: Utterance) -> tuple[np.ndarray, int]:
    """SVOX Pico: ``u.rate`` and ``u.pitch`` are its speed and pitch in percent of the voice's own.

    A fresh engine for every utterance: an engine's excitation noise goes on from where its last utterance left it
    (``iRand`` in picosig2.c), so the same call on a used engine gives other samples. A new one costs about 0.7 ms."""
    import ttspico

    engine = ttspico.TtsEngine(u.voice)
    engine.rate, engine.pitch = int(u.rate), int(u.pitch)
    pcm = engine.speak(u.text) or b""
    return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0, 16_000


# --- festival (a second training synthesiser) ------------------------------------------------------
FESTIVAL_PACKAGES = "apt-get install festival festvox-kdlpc16k festival-ca festvox-ca-ona-hts"


def festival_synth(utts: list[Utterance]) -> list[tuple[np.ndarray, int]]:
    """Render festival utterances with one festival process (its start-up costs more than a short utterance).

    ked takes each utterance's duration stretch and F0; ona (HTS) keeps its own prosody."""
    import soundfile as sf

    check_engine("festival")
    with tempfile.TemporaryDirectory() as tmp:
        lines, voice = [], None
        for i, u in sorted(enumerate(utts), key=lambda iu: iu[1].voice):  # one voice switch per voice
            if u.voice != voice:
                voice = u.voice
                lines.append(f"(voice_{voice})")
            text = spoken(u)
            if FESTIVAL_VOICES[voice].prosody:
                lines += [f"(Parameter.set 'Duration_Stretch {u.rate:.3f})",
                          f"(set! int_lr_params '((target_f0_mean {u.pitch:.1f}) (target_f0_std {u.pitch_range}) "
                          "(model_f0_mean 170) (model_f0_std 34)))"]
            lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{tmp}/{i}.wav" \'riff)')
        script = Path(tmp) / "synth.scm"
        script.write_text("\n".join(lines) + "\n", encoding="latin-1")  # festival reads Latin-1 text
        p = subprocess.run([shutil.which("festival"), "-b", str(script)], capture_output=True, text=True,
                           timeout=60 + 2 * len(utts))
        missing = [i for i in range(len(utts)) if not os.path.exists(f"{tmp}/{i}.wav")]
        if p.returncode != 0 or missing:
            raise RuntimeError(f"festival failed ({len(missing)} of {len(utts)} utterances missing): "
                               f"{(p.stderr or p.stdout)[-500:]}")
        return [sf.read(f"{tmp}/{i}.wav", dtype="float32") for i in range(len(utts))]


def check_engine(engine: str) -> None:
    """Raise SynthesizerMissing (naming the Debian package) unless ``engine`` can run here."""
    if engine == "espeak":
        espeak()
        espeak_variants()
    elif engine == "festival":
        for voice, v in FESTIVAL_VOICES.items():
            if shutil.which("festival") is None or not (Path("/usr/share/festival/voices") / v.language / voice).is_dir():
                raise SynthesizerMissing(f"festival or its {voice} voice is not installed: {FESTIVAL_PACKAGES}")
    elif engine == "pico":
        try:
            import ttspico  # noqa: F401
        except ImportError:
            raise SynthesizerMissing("SVOX Pico is not installed (--pico-share needs it): pip install ttspico, or "
                                     "install raydojo with its `pico` extra") from None
    elif shutil.which("flite") is None:
        raise SynthesizerMissing("flite is not installed: apt-get install flite")


# --- utterance plans ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Utterance:
    """Everything needed to render one utterance, deterministically."""

    text: str
    engine: str  # "espeak" | "festival" | "pico" | "flite"
    voice: str  # espeak "accent+variant", the festival voice, a Pico language (en-US, en-GB) or a flite voice
    category: str  # train | seen | unseen_accent | unseen_variant | unseen_both | flite
    rate: float  # espeak words per minute; festival and flite duration stretch; Pico speed in %
    pitch: float  # espeak pitch 0-99; festival and flite mean F0 in Hz; Pico pitch in %
    pitch_range: int  # espeak pitch range 0-99; festival F0 standard deviation in Hz
    gap: int
    lead_s: float
    tail_s: float
    rt60: float  # 0 = no reverberation
    noise: str  # "" = clean
    snr_db: float
    level_db: float  # peak level in dBFS
    seed: int
    warp: float = 1.0  # speaker warp: the waveform is read as if sampled at warp × its rate (pitch and formants × warp)
    band_rate: int = 0  # > 0: the speech passes through this sample rate (band-limited) before room and noise


def plan(split: str, n: int, seed: int, pico_share: float = 0.0) -> list[Utterance]:
    """The deterministic list of ``n`` utterances of ``split`` for ``seed``; ``pico_share`` of the recorded-speaker
    training and validation utterances are SVOX Pico's (0: none, and no draw for it, so the plan is the recipe's)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    if not 0 <= pico_share <= 1:
        raise ValueError(f"pico_share must be in [0, 1] (got {pico_share})")
    vs = voice_split()
    rng = np.random.default_rng([seed, SPLITS.index(split), CORPUS_VERSION])
    train = split in ("train", "val")
    out = []
    for i in range(n):
        text = sample_transcript(rng)
        if split == "other":
            voice = str(rng.choice(sorted(FLITE_VOICES)))
            lo, hi = FLITE_VOICES[voice]
            engine, category, rate, pitch = "flite", "flite", float(rng.uniform(0.85, 1.2)), float(rng.uniform(lo, hi))
        else:
            if train:
                category = "train"
                accent, variant = rng.choice(vs["train_accents"]), rng.choice(vs["train_variants"])
                if rng.random() < FOREIGN_SHARE:
                    accent = rng.choice(sorted(FOREIGN_ACCENTS))
            else:
                category = ("unseen_accent", "unseen_variant", "unseen_both")[i % 3]
                accent = rng.choice(vs["test_accents"] if category != "unseen_variant" else vs["train_accents"])
                variant = rng.choice(vs["test_variants"] if category != "unseen_accent" else vs["train_variants"][1:])
            voice = f"{accent}+{variant}" if variant else str(accent)
            engine, rate, pitch = "espeak", float(rng.uniform(125, 205)), float(rng.uniform(15, 85))
        warp, f0_std = 1.0, 0
        if train and rng.random() < RECORDED_SHARE:  # (only train/val draw here: test and other plans stay put)
            category = "train"
            if pico_share > 0 and rng.random() < pico_share:
                engine, voice = "pico", str(rng.choice(sorted(PICO_VOICES)))
                rate, pitch = float(int(rng.uniform(75, 130))), float(int(rng.uniform(75, 135)))
                warp = float(rng.uniform(*PICO_VOICES[voice]))
            else:
                engine, voice = "festival", FESTIVAL_VOICE
                rate, pitch = float(rng.uniform(0.8, 1.3)), float(rng.uniform(75, 180))
                f0_std = int(rng.integers(5, 35))
                if rng.random() < ONA_SHARE:
                    voice = ONA_VOICE
                warp = float(rng.uniform(*FESTIVAL_VOICES[voice].warp))
        band_rate = int(rng.choice(NARROWBAND_RATES)) if train and rng.random() < NARROWBAND_SHARE else 0
        noisy = rng.random() < (0.8 if train else 0.7)
        out.append(Utterance(
            text=text, engine=engine, voice=voice, category=category, rate=rate, pitch=pitch,
            pitch_range=f0_std or int(rng.integers(20, 95)), gap=int(rng.integers(0, 9)),
            lead_s=float(rng.uniform(0.03, 0.25)), tail_s=float(rng.uniform(0.03, 0.25)),
            rt60=float(rng.uniform(0.1, 0.7)) if rng.random() < (0.4 if train else 0.3) else 0.0,
            noise=str(rng.choice(NOISES)) if noisy else "",
            snr_db=float(rng.uniform(0, 30) if train else rng.uniform(5, 30)),
            level_db=float(rng.uniform(-30, -1)), seed=int(rng.integers(2**31)), warp=warp,
            band_rate=band_rate,
        ))
    return out


# --- rendering --------------------------------------------------------------------------------------
def room_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: the direct path, then a noise tail decaying 60 dB in rt60 s."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail[: int(0.002 * SAMPLE_RATE)] = 0  # a short gap before the first reflections
    drr_db = rng.uniform(0, 12)  # direct-to-reverberant ratio
    tail *= 10 ** (-drr_db / 20) / np.sqrt((tail**2).sum() + 1e-12)
    tail[0] = 1.0
    return tail.astype(np.float32)


def _coloured(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ∝ 1/f^exponent (1 = pink, 2 = brown)."""
    m = next_fast_len(n, real=True)
    spec = np.fft.rfft(rng.standard_normal(m))
    f = np.maximum(np.fft.rfftfreq(m), 1.0 / m)
    return np.fft.irfft(spec / f ** (exponent / 2), m)[:n]


class NoiseBank:
    """Noise of each kind; babble mixes segments of other (training) voices speaking vocabulary words."""

    def __init__(self, seed: int, n_babble: int = 8):
        rng = np.random.default_rng([seed, 99])
        vs = voice_split()
        words = DIGIT_WORDS + COMMAND_WORDS
        calls = []
        for _ in range(n_babble):
            voice = f"{rng.choice(vs['train_accents'])}+{rng.choice(vs['train_variants'][1:])}"
            text = " ".join(rng.choice(words, size=12))
            calls.append((text, voice, int(rng.integers(140, 220)), int(rng.integers(10, 90)), 50, 0))
        self.babble = [resample(x, espeak().rate, SAMPLE_RATE) for x in espeak_batch(calls)]

    def sample(self, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
        if kind == "white":
            x = rng.standard_normal(n)
        elif kind == "pink":
            x = _coloured(n, 1.0, rng)
        elif kind == "brown":
            x = _coloured(n, 2.0, rng)
        elif kind == "hum":
            t = np.arange(n) / SAMPLE_RATE
            f0 = rng.choice([50.0, 60.0])
            x = sum(rng.uniform(0.2, 1) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) for k in range(1, 8))
            x = x + 0.05 * rng.standard_normal(n)
        elif kind == "babble":
            x = np.zeros(n)
            for _ in range(int(rng.integers(3, 7))):
                src = self.babble[int(rng.integers(len(self.babble)))]
                start = int(rng.integers(0, max(1, len(src) - n)))
                seg = np.resize(src[start:start + n], n) if len(src) < n + start else src[start:start + n]
                x = x + seg
        else:
            raise ValueError(f"unknown noise {kind!r}")
        return x.astype(np.float32)


def render(u: Utterance, bank: NoiseBank | None = None, synthesised: tuple[np.ndarray, int] | None = None
           ) -> np.ndarray:
    """Utterance -> 16 kHz mono float32 waveform (``synthesised``: the engine's output, when rendered already)."""
    rng = np.random.default_rng(u.seed)
    if synthesised is not None:
        x, rate = synthesised
    elif u.engine == "espeak":
        x, rate = espeak_synth(u), espeak().rate
    elif u.engine == "festival":
        x, rate = festival_synth([u])[0]
    elif u.engine == "pico":
        x, rate = pico_synth(u)
    else:
        x, rate = flite_synth(u.text, u.voice, u.rate, u.pitch)
    # speaker warp: read the samples at warp × the rate (rounded to 100 Hz: a short polyphase filter)
    x = resample(x, int(round(rate * u.warp / 100)) * 100 if u.warp != 1.0 else rate)
    if u.band_rate:  # a narrowband source (e.g. an 8 kHz voice): nothing above band_rate / 2
        x = resample(resample(x, SAMPLE_RATE, u.band_rate), u.band_rate)
    x = x / (np.abs(x).max() + 1e-9)
    x = np.concatenate([np.zeros(int(u.lead_s * SAMPLE_RATE), np.float32), x,
                        np.zeros(int(u.tail_s * SAMPLE_RATE), np.float32)])
    if u.rt60 > 0:
        h = room_response(u.rt60, rng)
        x = fftconvolve(x, h)[: len(x) + len(h) // 4].astype(np.float32)
    if u.noise:
        bank = bank or NoiseBank(u.seed)
        speech = x[np.abs(x) > 0.05 * np.abs(x).max()]
        p_speech = float((speech**2).mean()) if speech.size else 1e-6
        noise = bank.sample(u.noise, len(x), rng)
        noise *= np.sqrt(p_speech / (10 ** (u.snr_db / 10)) / (float((noise**2).mean()) + 1e-12))
        x = x + noise
    x = x / (np.abs(x).max() + 1e-9) * 10 ** (u.level_db / 20)
    return x.astype(np.float32)


def render_shard(utts: list[Utterance], shard_seed: int) -> dict[str, np.ndarray]:
    """Render and featurise a shard (a Ray task body): packed float16 log-mel features + lengths. The shard's
    espeak-ng utterances are synthesised in order by one fresh library (``espeak_batch``), so a shard renders the
    same wherever and after whatever it runs; if the library crashes on one of them, each is synthesised alone."""
    import torch

    from services.asr.features import log_mel

    torch.set_num_threads(1)
    bank = NoiseBank(shard_seed)
    synthesised: dict[int, tuple[np.ndarray, int]] = {}
    esp, rate = [i for i, u in enumerate(utts) if u.engine == "espeak"], espeak().rate
    try:
        waves = espeak_batch([espeak_call(utts[i]) for i in esp])
    except SynthesisCrash:
        log.warning("asr data: libespeak-ng crashed in the shard of seed %d; synthesising its %d espeak-ng utterances "
                    "one by one", shard_seed, len(esp))
        waves = [espeak_synth(utts[i]) for i in esp]
    synthesised.update((i, (x, rate)) for i, x in zip(esp, waves, strict=True))
    fest = [i for i, u in enumerate(utts) if u.engine == "festival"]
    if fest:
        synthesised.update(zip(fest, festival_synth([utts[i] for i in fest]), strict=True))
    feats, lengths, durations = [], [], []
    for i, u in enumerate(utts):
        x = render(u, bank, synthesised.get(i))
        f = log_mel(x).numpy().astype(np.float16)
        feats.append(f)
        lengths.append(len(f))
        durations.append(len(x) / SAMPLE_RATE)
    return {"feats": np.concatenate(feats), "lengths": np.asarray(lengths, np.int64),
            "durations": np.asarray(durations, np.float32)}


# --- splits in the run-dir ----------------------------------------------------------------------------
@dataclasses.dataclass
class Split:
    """A rendered split: features packed along time, sliced by ``offsets``."""

    feats: np.ndarray  # (ΣT, 80) float16
    offsets: np.ndarray  # (n + 1,)
    texts: list[str]
    voices: list[str]
    categories: list[str]
    durations: np.ndarray  # seconds of audio per utterance

    def __len__(self) -> int:
        return len(self.texts)

    def features(self, i: int) -> np.ndarray:
        return self.feats[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, feats=self.feats, offsets=self.offsets, texts=np.asarray(self.texts),
                 voices=np.asarray(self.voices), categories=np.asarray(self.categories), durations=self.durations)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Split:
        z = np.load(io.BytesIO(data))
        return cls(z["feats"], z["offsets"], z["texts"].tolist(), z["voices"].tolist(), z["categories"].tolist(),
                   z["durations"])


def build(utts: list[Utterance], workers: int, seed: int, shard_size: int = 250) -> Split:
    """Render ``utts`` with Ray tasks (``workers`` at a time) and pack them."""
    import ray

    shards = [utts[i:i + shard_size] for i in range(0, len(utts), shard_size)]
    # libespeak-ng runs in child processes (``espeak_batch``): its crashes do not reach the Ray worker
    task = ray.remote(num_cpus=1)(render_shard)
    pending, results = {}, {}
    todo = list(range(len(shards)))
    with Progress("asr data", total=len(utts), unit="utterances") as bar:
        while todo or pending:
            while todo and len(pending) < workers:
                i = todo.pop(0)
                pending[task.remote(shards[i], seed * 100_003 + i)] = i
            ready, _ = ray.wait(list(pending), num_returns=1)
            results[pending.pop(ready[0])] = ray.get(ready[0])
            bar.update(sum(len(shards[j]) for j in results))
    parts = [results[i] for i in range(len(shards))]
    lengths = np.concatenate([p["lengths"] for p in parts]) if parts else np.zeros(0, np.int64)
    return Split(
        feats=np.concatenate([p["feats"] for p in parts]) if parts else np.zeros((0, 80), np.float16),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        texts=[u.text for u in utts], voices=[f"{u.engine}:{u.voice}" for u in utts],
        categories=[u.category for u in utts],
        durations=np.concatenate([p["durations"] for p in parts]) if parts else np.zeros(0, np.float32),
    )


def plan_id(split: str, n: int, seed: int, pico_share: float = 0.0) -> str:
    """Fingerprint of a split's plan: reuse the cache only when it matches."""
    key = {"split": split, "n": n, "seed": seed, "version": CORPUS_VERSION, "voices": voice_split(),
           "render": RENDER_REVISION}
    if split in ("train", "val"):
        # the training mix; the trailing number is its revision (bump it when the mix's ranges change)
        key["festival"] = [FESTIVAL_VOICE, RECORDED_SHARE, NARROWBAND_SHARE, NARROWBAND_RATES, ONA_VOICE, ONA_SHARE,
                           {k: v.warp for k, v in FESTIVAL_VOICES.items()}, 3]
        key["foreign"] = [FOREIGN_SHARE, FOREIGN_ACCENTS]
        if pico_share > 0:  # (absent at 0: the recipe's caches stay valid)
            key["pico"] = [pico_share, PICO_VOICES]
    key = json.dumps(key, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def ensure(run_dir: RunDir, sizes: dict[str, int], seed: int, workers: int, pico_share: float = 0.0
           ) -> dict[str, Split]:
    """The splits named in ``sizes`` (split -> n), rendered into ``run_dir/data`` unless cached there
    (``pico_share``: see ``plan``; it changes only the training and validation splits)."""
    from services.common.ray_utils import init_ray

    out = {}
    manifest = run_dir.read_json("data/manifest.json") if run_dir.exists("data/manifest.json") else {}
    for split, n in sizes.items():
        if n <= 0:
            continue
        share = pico_share if split in ("train", "val") else 0.0
        pid = plan_id(split, n, seed, share)
        name = f"data/{split}.npz"
        if manifest.get(split, {}).get("plan_id") == pid and run_dir.exists(name):
            out[split] = Split.from_bytes(run_dir.read_bytes(name))
            log.info("asr data: %s: %d utterances from the cache", split, n)
            continue
        try:
            engines = {"other": ["flite"], "test": ["espeak"]}.get(split, ["espeak", "festival"])
            for engine in engines + (["pico"] if share > 0 else []):
                check_engine(engine)
            utts = plan(split, n, seed, share)
        except SynthesizerMissing as exc:
            raise ConfigError(str(exc)) from None
        init_ray()
        t0 = time.monotonic()
        log.info("asr data: rendering %s: %d utterances with %d Ray tasks at a time", split, n, workers)
        data = build(utts, workers, seed + SPLITS.index(split))
        run_dir.write_bytes(name, data.to_bytes())
        manifest[split] = {"plan_id": pid, "n": n, "seed": seed, "frames": int(data.offsets[-1]),
                           "audio_s": round(float(data.durations.sum()), 1),
                           "render_s": round(time.monotonic() - t0, 1)}
        run_dir.write_json("data/manifest.json", manifest)
        log.info("asr data: %s done in %.0f s (%.0f s of audio)", split, time.monotonic() - t0,
                 float(data.durations.sum()))
        out[split] = data
    return out
