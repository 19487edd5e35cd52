"""CPU step time of every method on both small backbones: ``python -m baselines.bench_small``.

One step = forward + backward + AdamW step, batch 32 at 32 px, the method's own recipe with the sizes of the
built-in ``smoke`` experiment (decoder 64 x 1 block x 2 heads, 8-px mask units, 64 visual tokens). BEiT's
step includes tokenizing the batch (k-means codebook fitted on random smooth images first). Prints a
markdown table of the median step time over ``--steps`` timed steps after ``--warmup`` untimed ones.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from baselines.registry import METHODS, build_method, method_defaults
from baselines.tokenizers import KMeansTokenizer
from mixmim.config import RunConfig, apply_overrides

BACKBONES = ("mixmim_tiny_32", "mixmim_vit_tiny_patch4_32")
SMALL = {  # the smoke experiment's sizes (experiments/definitions/smoke.py)
    "method.decoder_dim": 64, "method.decoder_depth": 1, "method.decoder_heads": 2, "method.vocab_size": 64,
    "method.mask_unit": 8,
}


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """[n, 3, size, size] bicubic-upsampled 4x4 noise: cheap stand-ins for natural images."""
    coarse = torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def step_times(name: str, backbone: str, batch: int, steps: int, warmup: int, codebook: Path) -> list[float]:
    """Seconds per training step (forward, backward, AdamW step) of ``name`` on ``backbone``."""
    overrides = {**method_defaults(name), **SMALL, "model.backbone": backbone,
                 "method.tokenizer_path": str(codebook) if name == "beit" else ""}
    method = build_method(apply_overrides(RunConfig(), overrides)).train()
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    images = smooth_images(batch)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = method(images)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        codebooks = {}
        for backbone in BACKBONES:  # BEiT's visual tokens live on the final grid: 4x4 (hierarchical), 8x8 (ViT)
            grid = (8, 8) if backbone.startswith("mixmim_vit_") else (4, 4)
            codebooks[backbone] = Path(tmp) / f"{backbone}.pt"
            tokenizer = KMeansTokenizer.fit(smooth_images(256, seed=1), grid, SMALL["method.vocab_size"])
            tokenizer.save(codebooks[backbone])
        print(f"CPU step time (forward + backward + AdamW), batch {args.batch}, 32 px, "
              f"{torch.get_num_threads()} thread(s), median of {args.steps} steps\n")
        print("| method | backbone | ms / step | images / s |")
        print("|---|---|---:|---:|")
        for name in METHODS:
            for backbone in BACKBONES:
                median = statistics.median(step_times(name, backbone, args.batch, args.steps, args.warmup,
                                                      codebooks[backbone]))
                print(f"| {name} | {backbone} | {1000 * median:.1f} | {args.batch / median:.0f} |", flush=True)


if __name__ == "__main__":
    main()
