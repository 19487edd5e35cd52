"""The torch-free run layer: the run folder and its files (:mod:`~mixmim.runs.rundir`), the run's exclusive lock
(:mod:`~mixmim.runs.runlock`), where a stage's ranks meet (:mod:`~mixmim.runs.rendezvous`) and the benchmark
store's rows (:mod:`~mixmim.runs.bench_store`).

Standard library only (no torch, no submitit): all that ``slurm/`` and ``reports/`` may import from ``mixmim``.
Nothing is imported here; import the modules.
"""
