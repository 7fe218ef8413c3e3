"""Asynchronous advantage actor-critic (A3C, Mnih et al. 2016) on Ray, with an A2C (sync) mode."""
