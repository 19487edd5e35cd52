"""Throughput of a training step and of the data pipeline, measured the same way for every method.

- :mod:`mixmim.bench.step`: times ``Trainer`` steps (:meth:`~mixmim.engine.trainer.Trainer.train_batch`, the
  body of the one training loop) of each method's real pre-training task: its parameter groups, its AdamW,
  its lr schedule, clipping, precision and scaler. What ``mixmim-bench bench`` measures is what a run costs.
- :mod:`mixmim.bench.measure`: what the figures mean (time, memory, FLOPs, MFU) and the summary of one
  variant's steps (:class:`StepStats`).
- :mod:`mixmim.bench.data`: decode + augmentation through a DataLoader, separate from the step.

The benchmark uses the engine and is not part of it: nothing in ``mixmim.engine`` imports this package.
"""

from mixmim.bench.data import DataStats, benchmark_data, benchmark_gpu_decode
from mixmim.bench.measure import StepStats, attention_impl, method_flops, peak_tflops_for
from mixmim.bench.step import OPTIMIZERS, SyntheticImages, bench_trainer, benchmark_step, benchmark_variants

__all__ = [
    "OPTIMIZERS",
    "DataStats",
    "StepStats",
    "SyntheticImages",
    "attention_impl",
    "bench_trainer",
    "benchmark_data",
    "benchmark_gpu_decode",
    "benchmark_step",
    "benchmark_variants",
    "method_flops",
    "peak_tflops_for",
]
