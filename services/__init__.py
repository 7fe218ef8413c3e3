"""raydojo: deep-learning workloads as one distributed service on Ray."""

__version__ = "0.1.0"
