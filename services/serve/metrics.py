"""Serve ingress metrics (defined in services/serve/common.py)."""

from services.serve.common import LATENCY, REQUESTS  # noqa: F401 - registers the definitions
