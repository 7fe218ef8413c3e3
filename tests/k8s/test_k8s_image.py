"""Dockerfile.gpu (no Docker engine here): it parses, pins its base, ends non-root, and agrees with the chart."""

from __future__ import annotations

import fnmatch
import re
import shlex

import pytest
import yaml

from tests.k8s import chart_tools as ct

pytestmark = pytest.mark.k8s
DOCKERFILE = ct.REPO / "Dockerfile.gpu"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with comments dropped and line continuations joined."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        if word.upper() not in INSTRUCTIONS:
            raise ValueError(f"not a Dockerfile instruction: {current[:60]!r}")
        out.append((word.upper(), " ".join(rest.split())))
        current = ""
    if current:
        raise ValueError("Dockerfile ends inside a continued line")
    return out


@pytest.fixture(scope="module")
def steps():
    return parse_dockerfile(DOCKERFILE.read_text())


def test_parser_rejects_garbage():
    with pytest.raises(ValueError):
        parse_dockerfile("FROM x:1\nRUN echo \\\n")
    with pytest.raises(ValueError):
        parse_dockerfile("FORM x:1\n")


def test_base_is_pinned_ray_gpu_image_matching_ray_and_python(steps):
    froms = [a for i, a in steps if i == "FROM"]
    assert len(froms) == 1, "one stage: nothing from a build stage to leave behind"
    image = froms[0].split()[0]
    repo, _, tag = image.partition(":")
    assert repo == "rayproject/ray" and tag and tag != "latest" and "@" not in image
    m = re.fullmatch(r"(\d+\.\d+\.\d+)-py(\d)(\d+)-cu(\d+)", tag)
    assert m, f"tag {tag!r} is not <ray>-py<python>-cu<cuda>"
    ray_version, py = m.group(1), f"{m.group(2)}.{m.group(3)}"
    assert py == "3.11"
    values = yaml.safe_load((ct.CHART / "values.yaml").read_text())
    assert values["rayVersion"] == ray_version
    pyproject = (ct.REPO / "pyproject.toml").read_text()
    lo, hi = re.search(r'"ray\[[^\]]*\]>=([\d.]+),<([\d.]+)"', pyproject).groups()
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(lo) <= as_tuple(ray_version) < as_tuple(hi)
    # the torch wheel index matches the base image's CUDA
    args = dict(a.split("=", 1) for i, a in steps if i == "ARG" and "=" in a)
    assert args["TORCH_INDEX_URL"].endswith(f"/whl/cu{m.group(4)}")


def test_ends_non_root_as_the_chart_runs_it(steps):
    assert steps[-1][0] == "USER", "the last instruction sets the run-time user"
    uid, _, gid = steps[-1][1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid (kubelet can verify runAsNonRoot)"
    values = yaml.safe_load((ct.CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]
    # pip runs as that user too (the root part is apt only)
    user = None
    for i, a in steps:
        user = a if i == "USER" else user
        if i == "RUN" and "pip install" in a:
            assert user == steps[-1][1]


def test_installs_cuda_torch_and_the_system_packages(steps):
    runs = " && ".join(a for i, a in steps if i == "RUN")
    assert "constraints/cpu.txt" not in runs
    assert re.search(r'pip install --no-cache-dir "torch==\$\{TORCH_VERSION\}" --index-url', runs)
    assert "assert torch.version.cuda" in runs
    make_packages = re.search(r"^SYSTEM_PACKAGES \?= (.*)$", (ct.REPO / "Makefile").read_text(), re.M).group(1).split()
    apt = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", runs).group(1).split()
    assert set(make_packages) - {"prometheus"} <= set(apt)  # prometheus is the local monitoring stack only
    assert "espeak-ng" in apt
    for cmd in re.findall(r"pip install [^&]*", runs):
        assert "--no-cache-dir" in cmd, cmd


def test_leaves_no_build_tools_or_apt_lists(steps):
    for i, a in steps:
        if i == "RUN" and "apt-get install" in a:
            purge = re.search(r"apt-get purge -y --auto-remove ([^&]+)", a)
            assert purge, "build tools are purged in the same layer"
            assert {"build-essential", "gcc", "g++", "make", "sudo"} <= set(purge.group(1).split())
            assert "rm -rf /var/lib/apt/lists/*" in a


def _ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns)


def test_copied_sources_exist_and_dockerignore_keeps_the_context_small(steps):
    patterns = [ln.strip() for ln in (ct.REPO / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for must in (".git", ".venv", "runs", "tests", "helm", "k8s"):
        assert _ignored(must, patterns), f".dockerignore should exclude {must}"
    for i, a in steps:
        if i == "COPY":
            parts = [p for p in shlex.split(a) if not p.startswith("--")]
            for src in parts[:-1]:
                assert (ct.REPO / src).exists(), f"COPY {src}: missing"
                assert not _ignored(src, patterns), f"COPY {src} is excluded by .dockerignore"


def test_chart_and_manifests_reference_the_image_this_file_builds():
    chart = yaml.safe_load((ct.CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((ct.CHART / "values.yaml").read_text())
    image = f"{values['image']['repository']}:{chart['appVersion']}-gpu"
    assert f"-t {image} ." in DOCKERFILE.read_text()
    for f in (ct.K8S / "base").glob("*.yaml"):
        for tag in re.findall(r"image: (\S+)", f.read_text()):
            assert tag == image, f"{f.name} uses {tag}"
