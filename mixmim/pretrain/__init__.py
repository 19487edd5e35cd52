"""Pre-training: the method contract and MixMIM (:mod:`~mixmim.pretrain.method`), masks
(:mod:`~mixmim.pretrain.masking`), reconstruction targets (:mod:`~mixmim.pretrain.targets`), the shared decoder
(:mod:`~mixmim.pretrain.decoder`) and the ``pretrain`` stage's task for the Trainer (:mod:`~mixmim.pretrain.task`).

Nothing is imported here (the task imports the engine, which must not import this package back); import the
modules.
"""
