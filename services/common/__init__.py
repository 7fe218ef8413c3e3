"""Plumbing shared by every capability: configs, run-dirs, checkpoints, metrics, Ray helpers."""
