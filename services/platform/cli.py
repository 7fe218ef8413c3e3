"""`dojo dashboards render` (`dojo up` / `dojo down` are top-level commands, see services/cli.py)."""

from services.platform import dashboards

COMMANDS = {
    "render": (dashboards.main, "render deploy/grafana/*.json and the Helm chart's copy from Python data"),
}
