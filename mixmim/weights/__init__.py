"""Weights: which encoder a stage starts from (``cfg.init``, :mod:`~mixmim.weights.init_source`, torch-free),
reading checkpoint files safely (:mod:`~mixmim.weights.torchfile`), the official key layouts
(:mod:`~mixmim.weights.official_keys`) and loading official or suite checkpoints into a backbone, with position
embeddings and relative-position tables resized (:mod:`~mixmim.weights.checkpoint`).

Nothing is imported here; import the modules.
"""
