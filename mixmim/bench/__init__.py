"""Throughput of a training step and of the data pipeline, measured the same way for every method.

- :mod:`mixmim.bench.step`: times ``Trainer`` steps (:meth:`~mixmim.engine.trainer.Trainer.train_batch`, the
  body of the one training loop) of each method's real pre-training task: its parameter groups, its AdamW,
  its lr schedule, clipping, precision and scaler. What ``mixmim-bench bench`` measures is what a run costs.
- :mod:`mixmim.bench.measure`: what the figures mean (time, memory, FLOPs, MFU) and the summary of one
  variant's steps (:class:`StepStats`).
- :mod:`mixmim.bench.data`: decode + augmentation through a DataLoader, separate from the step.
- :mod:`mixmim.bench.flops`: FLOPs (fvcore convention) and parameter counts of backbones and methods.
- :mod:`mixmim.bench.peaks`: dense peak TFLOP/s of GPUs (standard library only: the cost projection reads it).

The benchmark uses the engine and is not part of it: nothing in ``mixmim.engine`` imports this package. The
names below load with their module on first use (``lazy_loader``), so ``mixmim.bench.peaks`` costs no torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "data": ["DataStats", "benchmark_data", "benchmark_gpu_decode"],
    "measure": ["StepStats", "attention_impl", "method_flops", "peak_tflops_for"],
    "step": ["OPTIMIZERS", "StepOptions", "SyntheticImages", "bench_trainer", "benchmark_step", "benchmark_variants"],
})
