"""The one-machine platform (`dojo up` / `dojo down`) and observability (dashboards, alerts, Prometheus)."""
