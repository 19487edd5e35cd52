"""One module per group of experiments; ``experiments.registry.EXPERIMENTS`` names them."""
