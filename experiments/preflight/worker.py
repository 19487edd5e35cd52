"""The stages of one preflight chain, in a process of their own: ``python -m experiments.preflight.worker SPEC.json``.

The stage function is the run's own (:data:`experiments.stages.STAGES`), called on the preflight's config
(:mod:`experiments.preflight.configure`) in a scratch run folder, inside
:func:`mixmim.engine.step_observer.observe_steps`; what it built and did is then measured:

- ``step_times_s``: wall time of every ``Trainer.train_batch`` (CUDA: synchronised);
- ``peak_bytes``: CUDA ``max_memory_allocated``, or on CPU the peak of glibc's bytes in use
  (:class:`mixmim.engine.host_memory.HostMemorySampler`, the allocator's peak), with ``start_bytes`` before the
  stage and ``state_bytes`` (weights, gradients and optimizer state of the trained task, counted on its tensors;
  ``optimizer_bytes`` the optimizer state alone);
- ``loader_images_per_s``: the stage's training dataset (its transform) read in this process, i.e. per worker;
- ``checkpoint_bytes`` / ``encoder_bytes``: the files the stage wrote.

The host peak is of bytes in use (not the resident set, which keeps a freed heap), so the stages of a chain share
a process and each still gets its own peak; a crash (out of memory) fails that chain only. Each stage's row (JSON)
is written to its spec's ``row`` path, failures included, as soon as it is known.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

LOADER_IMAGES = 8  # images read to time the loader (after one warm-up read)
UPSTREAM = ("tokenizer", "pretrain")  # a failure here blocks the chain's later stages


def map_precision(cfg: Any, stage: str, cuda: bool) -> str | None:
    """On CPU, a recipe's fp16/bf16 becomes fp32 (fp16 needs CUDA; bf16 autocast falls to a reference GEMM on many
    CPUs, 8x slower); returns the note, or None when nothing changed."""
    section = getattr(cfg, stage, None)
    precision = getattr(section, "precision", None)
    if cuda or precision not in ("fp16", "bf16"):
        return None
    section.precision = "fp32"
    return f"{stage}.precision={precision} mapped to fp32 on CPU"


def map_decode(cfg: Any, cuda: bool) -> str | None:
    """On CPU, ``data.decode=gpu`` (decode on the CUDA device in the step) becomes ``cpu``, unless
    ``MIXMIM_DECODE_ON_CPU=1`` asks for the GPU path on the CPU; returns the note, or None when nothing changed."""
    from mixmim.data.gpu_decode import CPU_OVERRIDE_ENV

    if cuda or cfg.data.decode != "gpu" or os.environ.get(CPU_OVERRIDE_ENV) == "1":
        return None
    cfg.data.decode = "cpu"
    return "data.decode=gpu mapped to cpu on CPU (the GPU path's decode in the step is not measured here)"


def cap_tokenizer_images(cfg: Any) -> str | None:
    """On generated data, BEiT's k-means tokenizer is fitted on the fewest images that give a cell per code
    (``data.max_train_images``; ViT-B: 42 images, 8,232 cells, instead of all 168 and 32,928 cells): the stage's code
    runs unchanged, on the data it needs; the k-means on a user's data is left whole. Returns the note, or None."""
    from baselines.tokenizers.stage import target_grid

    if cfg.method.tokenizer != "kmeans":
        return None
    (rows, cols), _ = target_grid(cfg)
    need = -(-cfg.method.vocab_size // (rows * cols))
    if cfg.data.max_train_images and cfg.data.max_train_images <= need:
        return None
    cfg.data.max_train_images = need
    return (f"tokenizer fitted on {need} generated images ({need * rows * cols} cells for "
            f"{cfg.method.vocab_size} codes), the fewest that give a cell per code")


def save_standin(cfg: Any, path: Path) -> None:
    """A random encoder of ``cfg.model.backbone`` saved as an ``encoder.pth`` (the stand-in for a missing init)."""
    import torch

    from mixmim.backbones import create_backbone
    from mixmim.engine.checkpoint import atomic_torch_save

    torch.manual_seed(cfg.seed)
    model = create_backbone(cfg.model.backbone, num_classes=0, img_size=cfg.model.img_size)
    atomic_torch_save({"model": model.state_dict(), "meta": {"standin": True}}, path)


def state_bytes(task: Any) -> tuple[int, int]:
    """Bytes of the task's weights (all of ``module``), gradients and optimizer state (of ``trainable``), and of the
    optimizer state alone."""
    import torch

    weights = sum(p.numel() * p.element_size() for p in task.module.parameters())
    grads = sum(p.numel() * p.element_size() for p in task.trainable.parameters() if p.requires_grad)
    state = sum(v.numel() * v.element_size() for s in task.optimizer.state.values() for v in s.values()
                if isinstance(v, torch.Tensor))  # fmt: skip
    return int(weights + grads + state), int(state)


def loader_rate(dataset: Any) -> float:
    """Images per second of ``dataset[i]`` (decode + the stage's transform) in this process."""
    count = min(len(dataset), LOADER_IMAGES + 1)
    dataset[0]
    start = time.perf_counter()
    for i in range(1, count):
        dataset[i]
    return (count - 1) / max(time.perf_counter() - start, 1e-9)


def knn_dataset(cfg: Any) -> Any:
    """The dataset the kNN stage reads (the evaluation transform at the backbone's size)."""
    from mixmim.backbones import create_backbone
    from mixmim.data import build_dataset, eval_transform

    size = create_backbone(cfg.model.backbone, num_classes=0, img_size=cfg.model.img_size).img_size
    return build_dataset(cfg.data, "train", eval_transform(size))


def measure_stage(stage: str, cfg: Any, run_dir: Path) -> dict[str, Any]:
    """Run ``stage`` (the run's stage function) on ``cfg`` in ``run_dir`` and measure it (see the module doc)."""
    import torch

    from experiments.stages import STAGES
    from mixmim.engine.host_memory import HostMemorySampler
    from mixmim.engine.step_observer import observe_steps

    cuda = torch.cuda.is_available()
    row: dict[str, Any] = {"device": torch.cuda.get_device_name() if cuda else "cpu"}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with HostMemorySampler() as host, observe_steps() as observer:
        row["start_bytes"] = host.mark() if not cuda else torch.cuda.memory_allocated()
        result = STAGES[stage](cfg, run_dir)
        peak_host = host.mark()
    row["wall_s"] = time.perf_counter() - start
    row["peak_bytes"] = torch.cuda.max_memory_allocated() if cuda else peak_host
    row["memory_kind"] = "cuda max allocated" if cuda else f"host allocator peak ({host.kind})"
    row["step_times_s"] = observer.step_times
    if observer.tasks:
        task = observer.tasks[-1]
        state, optimizer = state_bytes(task)
        row.update(batch_size=task.recipe.batch_size, precision=task.recipe.precision, state_bytes=state,
                   optimizer_bytes=optimizer, params=sum(p.numel() for p in task.module.parameters()),
                   loader_images_per_s=loader_rate(task.train_set))  # fmt: skip
    elif stage == "knn":
        row.update(batch_size=cfg.knn.batch_size, precision="fp32", loader_images_per_s=loader_rate(knn_dataset(cfg)),
                   images_per_s=result.get("images_per_s"))  # fmt: skip
    folder = run_dir / stage
    for name, key in (("checkpoint-last.pth", "checkpoint_bytes"), ("encoder.pth", "encoder_bytes")):
        if (folder / name).is_file():
            row[key] = (folder / name).stat().st_size
    return row


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one stage of a spec (``stage``, ``config``, ``run_dir``, ``standin``, ``generated_data``); its row,
    failures included."""
    from mixmim.config import load_yaml

    row: dict[str, Any] = {"status": "passed", "notes": []}
    try:
        import torch

        cfg = load_yaml(spec["config"])
        cuda = torch.cuda.is_available()
        for note in (map_precision(cfg, spec["stage"], cuda), map_decode(cfg, cuda)):
            row["notes"] += [note] if note else []
        if spec.get("generated_data") and spec["stage"] == "tokenizer":
            note = cap_tokenizer_images(cfg)
            row["notes"] += [note] if note else []
        if spec.get("standin"):
            save_standin(cfg, Path(spec["standin"]))
        row.update(measure_stage(spec["stage"], cfg, Path(spec["run_dir"])))
    except Exception as err:  # every failure becomes the stage's row (out of memory included)
        traceback.print_exc()
        row.update(status="failed", error=f"{type(err).__name__}: {err}".splitlines()[0][:400],
                   error_type=type(err).__name__, error_text=str(err)[:2000])  # fmt: skip
    return row


def main(spec_path: str) -> int:
    """Run the chain's stages in order (``{"stages": [spec, ...]}``), writing each row as soon as it is known;
    after a failed tokenizer or pre-training the later stages are written as blocked. 0 when all passed."""
    import gc

    from experiments.stages import prepare_process
    from mixmim.runs.rundir import atomic_write_json

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_process()
    blocked = None
    for spec in json.loads(Path(spec_path).read_text())["stages"]:
        print(f"=== preflight stage {spec['stage']}", flush=True)
        if blocked:
            row = {"status": "blocked", "notes": [], "error": blocked}
        else:
            row = run_spec(spec)
            gc.collect()
        if row["status"] != "passed" and spec["stage"] in UPSTREAM and not blocked:
            blocked = f"{spec['stage']} of this chain did not pass"
        atomic_write_json(spec["row"], row)
    return 0 if blocked is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
