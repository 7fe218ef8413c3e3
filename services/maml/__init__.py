"""Meta-learning: MAML (second order), first-order MAML and Reptile, with task samplers and baselines."""
