"""Ray Tune sweeps over the typed training configs (MAML family; GAN family next)."""
