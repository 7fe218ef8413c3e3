"""Build ``.whl/``: the wheels that ``bench/gpu_check.sh`` installs on a lent GPU machine.

The lent machines (the ``device`` tool of this workplace, or any bare CUDA box without internet)
run Python 3.12 with CUDA PyTorch, numpy, scipy, pyarrow, matplotlib, rich, aiohttp, grpcio,
protobuf and friends, but no Ray, Gymnasium, ALE, tyro or jiwer. Everything that travels there
(the repository and these wheels) must fit in 64 MiB, and Ray's own wheel is 76 MiB, so this
script repacks it without what a Python-only GPU check never loads:

- ``ray/jars/`` (31 MiB compressed: the Java worker);
- ``ray/dashboard/client/build/`` (2.4 MiB: the dashboard's web UI; the check runs without one);
- the debug symbols of ``gcs_server``, ``raylet`` and ``_raylet.so`` (``strip --strip-unneeded``).

It also renders a small speech corpus into ``.whl/asr/`` (the GPU machine has no espeak-ng or flite):
training and validation splits for ``dojo asr train --gpus``'s loop, held-out test utterances for the
CPU-vs-GPU decoding check, and the voice split that keys the corpus cache.

Usage (here, with internet access to PyPI; ~50 MiB written)::

    .venv/bin/python bench/gpu_wheels.py            # -> .whl/ (git-ignored)

then ``bench/gpu_check.sh`` on the GPU machine (see bench/README.md, "GPU check").
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PY = "3.12"  # the lent machines' python3
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
# what the services import that the CUDA image lacks (versions = this repo's CPU install), each with
# the dependencies the image lacks too; --no-deps keeps numpy, click, cloudpickle, typing-extensions
# at the image's versions
WHEELS = [
    "ray==2.60.0", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py",
    "gymnasium==1.2.2", "farama-notifications", "ale-py==0.12.1",
    "tyro==1.0.17", "docstring-parser", "typeguard",
    "jiwer==4.0.0", "rapidfuzz",
    "soundfile", "cffi", "pycparser",
]
DROP = ("ray/jars/", "ray/dashboard/client/build/")
STRIP = ("ray/_raylet.so", "ray/core/src/ray/gcs/gcs_server", "ray/core/src/ray/raylet/raylet")
LIMIT = 64 * 2**20


def download(out: Path, python: str = PY) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", python,
           "--implementation", "cp", "-d", str(out)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + WHEELS, check=True)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim_ray(wheel: Path) -> Path:
    """Rewrite Ray's wheel in place without DROP and with STRIP stripped (RECORD regenerated)."""
    out = wheel.with_suffix(".slim")
    record_name = None
    lines = []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst, \
            tempfile.TemporaryDirectory() as tmp:
        for info in src.infolist():
            name = info.filename
            if name.startswith(DROP):
                continue
            if name.endswith(".dist-info/RECORD"):
                record_name = name
                continue
            data = src.read(info)
            if name in STRIP:
                path = Path(tmp) / "bin"
                path.write_bytes(data)
                subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
                data = path.read_bytes()
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = len(data)
            dst.writestr(info, data, compresslevel=9)
            lines.append(_record_line(name, data))
        if record_name is None:
            raise RuntimeError(f"{wheel.name} has no RECORD")
        lines.append(f"{record_name},,")
        dst.writestr(record_name, "\n".join(lines) + "\n")
    out.replace(wheel)
    return wheel


def build_asr_sample(dest: Path, n_train: int = 100, n_val: int = 20, n_test: int = 60, seed: int = 0) -> int:
    """Render the small corpus into the run-dir ``dest`` (compressed .npz) + voice_split.json; returns its bytes."""
    import io
    import json

    import numpy as np

    from services.asr import corpus
    from services.common.ray_utils import ray_session
    from services.common.rundir import RunDir

    with ray_session():  # a Ray already running here (a test session's) stays up
        corpus.ensure(RunDir(str(dest)), {"train": n_train, "val": n_val, "test": n_test}, seed, workers=2)
    for path in (dest / "data").glob("*.npz"):
        arrays = dict(np.load(path))
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # Split.from_bytes reads either
        path.write_bytes(buf.getvalue())
    (dest / "voice_split.json").write_text(json.dumps(corpus.voice_split()))
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".whl", help="folder for the wheels (emptied first)")
    ap.add_argument("--python", default=PY, help="the GPU machine's Python version")
    args = ap.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    download(out, args.python)
    for ray_wheel in out.glob("ray-*.whl"):
        before = ray_wheel.stat().st_size
        slim_ray(ray_wheel)
        print(f"{ray_wheel.name}: {before / 2**20:.1f} -> {ray_wheel.stat().st_size / 2**20:.1f} MiB")
    sample = build_asr_sample(out / "asr")
    print(f"asr sample corpus: {sample / 2**20:.1f} MiB")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    tracked = int(subprocess.run("git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1", shell=True,
                                 capture_output=True, text=True).stdout.strip() or 0)
    print(f"{len(list(out.glob('*.whl')))} wheels and the corpus, {total / 2**20:.1f} MiB; with the repository's tracked files "
          f"{(total + tracked) / 2**20:.1f} MiB of the 64 MiB that may travel")
    return 0 if total + tracked < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
