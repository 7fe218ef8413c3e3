"""Tools for the Helm chart and the kustomize manifests, without a helm binary.

    python tests/k8s/chart_tools.py sync          # copy deploy/serve, deploy/grafana, deploy/prometheus/rules.yml
    python tests/k8s/chart_tools.py readme        # regenerate the values table in helm/raydojo/README.md
    python tests/k8s/chart_tools.py check         # exit 1 if a copy or the table is out of date
    python tests/k8s/chart_tools.py template [-f values.yaml ...] [--set-json JSON] [--release R] [--namespace N]
                                                  # print the manifests `helm template` would (helm-python-sdk)

One source of truth: `deploy/serve/raydojo.yaml` is the Serve config everywhere (the chart's
`files/serve-config.yaml` and `k8s/base/serve-config.yaml` are copies), `deploy/grafana/*.json` are the
dashboards (the chart's `dashboards/` holds copies), `deploy/prometheus/rules.yml` are the alerts (the
chart's `files/alert-rules.yaml` is a copy, shipped in its PrometheusRule), `helm/raydojo/values.yaml` documents every value
(the README table is generated from its `# --` comments).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "raydojo"
K8S = REPO / "k8s"
SERVE_CONFIG = REPO / "deploy" / "serve" / "raydojo.yaml"
JOB_SPECS = REPO / "deploy" / "jobs"
GRAFANA = REPO / "deploy" / "grafana"
ALERT_RULES = REPO / "deploy" / "prometheus" / "rules.yml"
ALERT_RULES_COPY = CHART / "files" / "alert-rules.yaml"
SERVE_COPIES = [CHART / "files" / "serve-config.yaml", K8S / "base" / "serve-config.yaml"]
DASHBOARD_COPIES = CHART / "dashboards"
README = CHART / "README.md"
TABLE_START, TABLE_END = "<!-- values-table:start -->", "<!-- values-table:end -->"


# ----------------------------------------------------------------------------- copies (sync / check)


def _planned_copies() -> list[tuple[Path, Path]]:
    pairs = [(SERVE_CONFIG, dst) for dst in SERVE_COPIES]
    if ALERT_RULES.exists():
        pairs.append((ALERT_RULES, ALERT_RULES_COPY))
    pairs += [(src, DASHBOARD_COPIES / src.name) for src in sorted(GRAFANA.glob("*.json"))]
    return pairs


def _stale_copies() -> list[Path]:
    wanted = {p.name for p in GRAFANA.glob("*.json")}
    stale = [p for p in sorted(DASHBOARD_COPIES.glob("*.json")) if p.name not in wanted]
    return stale + ([ALERT_RULES_COPY] if ALERT_RULES_COPY.exists() and not ALERT_RULES.exists() else [])


def out_of_date() -> list[str]:
    """Copies that differ from their source (or should not exist), as repo-relative paths."""
    bad = [str(dst.relative_to(REPO)) for src, dst in _planned_copies()
           if not dst.exists() or not filecmp.cmp(src, dst, shallow=False)]
    bad += [f"{p.relative_to(REPO)} (its source in deploy/ is gone)" for p in _stale_copies()]
    return bad


def sync() -> list[str]:
    """Refresh every copy; returns what changed."""
    changed = out_of_date()
    for src, dst in _planned_copies():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    for p in _stale_copies():
        p.unlink()
    return changed


# ----------------------------------------------------------------------------- values table


def _scalar_key(raw: str) -> str:
    raw = raw.strip()
    return raw[1:-1] if raw[:1] in "\"'" and raw[-1:] == raw[:1] else raw


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+|\"[^\"]+\"|'[^']+'):(?:\s|$)")


def documented_keys(values_text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key preceded by a `# --` comment, in file order.

    A description is the text after `# -- ` plus directly following `# ` lines. Keys inside list
    items are not walked (the list is documented as a whole).
    """
    out: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []  # (indent, key)
    pending: list[str] | None = None
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None and stripped.startswith("# "):
                pending.append(stripped[2:].strip())
            continue
        if not stripped:
            pending = None
            continue
        if stripped.startswith("- "):
            pending = None
            continue
        m = _KEY.match(line)
        if not m:
            pending = None
            continue
        indent, key = len(m["indent"]), _scalar_key(m["key"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending is not None:
            out.append((".".join(k for _, k in stack), " ".join(pending)))
        pending = None
    return out


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every key whose value is not a non-empty map (what must be documented)."""
    keys = []
    for k, v in values.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            keys += leaf_keys(v, path + ".")
        else:
            keys.append(path)
    return keys


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):  # no key of values.yaml contains a dot
        node = node[part]
    return node


def _type_name(v: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
        type(v), "null" if v is None else type(v).__name__)


def values_table(values_path: Path = CHART / "values.yaml") -> str:
    text = values_path.read_text()
    values = yaml.safe_load(text)
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for key, desc in documented_keys(text):
        default = _lookup(values, key)
        shown = json.dumps(default, separators=(",", ":"))
        if len(shown) > 80:
            shown = "see values.yaml"
        cell = f"`{shown}`".replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(default)} | {cell} | {desc.replace('|', chr(92) + '|')} |")
    return "\n".join(rows) + "\n"


def readme_with_table(readme_text: str, table: str) -> str:
    if TABLE_START not in readme_text or TABLE_END not in readme_text:
        raise ValueError(f"{README} lacks the markers {TABLE_START} / {TABLE_END}")
    head, rest = readme_text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    return f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}"


def readme_current() -> bool:
    text = README.read_text()
    return readme_with_table(text, values_table()) == text


def update_readme() -> bool:
    text = README.read_text()
    new = readme_with_table(text, values_table())
    if new != text:
        README.write_text(new)
        return True
    return False


# ----------------------------------------------------------------------------- rendering


def subchart_dependencies(chart_dir: Path = CHART) -> list[dict[str, Any]]:
    return yaml.safe_load((chart_dir / "Chart.yaml").read_text()).get("dependencies", [])


def prepare_chart(dest: Path, chart_dir: Path = CHART) -> Path:
    """Copy the chart to dest/raydojo with empty stand-ins for the subcharts `helm dependency update` fetches.

    helm-python-sdk's dry-run install refuses a chart whose dependencies are missing from charts/, even
    when their condition is false; a Chart.yaml with the right name and version satisfies it. The
    stand-ins render nothing, so the output is exactly this chart's resources.
    """
    target = dest / chart_dir.name
    shutil.copytree(chart_dir, target, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    for dep in subchart_dependencies(chart_dir):
        sub = target / "charts" / dep["name"]
        sub.mkdir(parents=True)
        (sub / "Chart.yaml").write_text(
            f"apiVersion: v2\nname: {dep['name']}\nversion: {dep['version']}\n"
            "description: test stand-in (helm dependency update fetches the real chart)\n")
    return target


def load_values(*files: Path | str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge values files left to right (maps deep-merged, like helm -f a -f b), then overrides."""
    merged: dict[str, Any] = {}
    for f in files:
        _deep_merge(merged, yaml.safe_load(Path(f).read_text()) or {})
    if overrides:
        _deep_merge(merged, overrides)
    return merged


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def render(chart: Path, values: dict[str, Any], release: str = "dojo", namespace: str = "dojo") -> dict[str, Any]:
    """`helm template`: {"docs": [manifests as dicts], "manifest": str, "notes": str}."""
    import helm_python

    rel = helm_python.Config(namespace=namespace).install(str(chart), release, values, dry_run="client")
    manifest = rel.get("manifest", "")
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    return {"docs": docs, "manifest": manifest, "notes": rel.get("notes", "")}


def lint(chart: Path, values: dict[str, Any]) -> dict[str, Any]:
    import helm_python

    return helm_python.lint(str(chart), values, strict=True)


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chart_tools", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("sync", help="copy deploy/serve, deploy/grafana, deploy/prometheus/rules.yml into the chart")
    sub.add_parser("readme", help="regenerate the values table of helm/raydojo/README.md")
    sub.add_parser("check", help="exit 1 when a copy or the README table is out of date")
    t = sub.add_parser("template", help="print the rendered manifests (helm template)")
    t.add_argument("-f", "--values", action="append", default=[], help="values file (repeatable)")
    t.add_argument("--set-json", default=None, help="JSON object merged over the values files")
    t.add_argument("--release", default="raydojo")
    t.add_argument("--namespace", default="raydojo")
    a = p.parse_args(argv)
    if a.cmd == "sync":
        changed = sync()
        print("updated: " + ", ".join(changed) if changed else "all copies current")
    elif a.cmd == "readme":
        print("README table updated" if update_readme() else "README table current")
    elif a.cmd == "check":
        problems = out_of_date()
        if not readme_current():
            problems.append(f"{README.relative_to(REPO)} values table")
        if problems:
            print("out of date (run `python tests/k8s/chart_tools.py sync` / `readme`): " + ", ".join(problems),
                  file=sys.stderr)
            return 1
        print("chart copies and README table are current")
    else:
        try:
            overrides = json.loads(a.set_json) if a.set_json else None
        except json.JSONDecodeError as exc:
            print(f"chart_tools template: error: --set-json is not JSON: {exc}", file=sys.stderr)
            return 2
        import helm_python

        try:
            values = load_values(*a.values, overrides=overrides)
            with tempfile.TemporaryDirectory() as tmp:
                out = render(prepare_chart(Path(tmp)), values, a.release, a.namespace)
        except (OSError, yaml.YAMLError, helm_python.HelmError) as exc:
            print(f"chart_tools template: error: {exc}", file=sys.stderr)
            return 2
        sys.stdout.write(out["manifest"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
