"""Frozen features: the backbone's globally pooled final-stage tokens, as the linear probe and kNN use them."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from mixmim.backbones import Backbone
from mixmim.data import unpack_batch
from mixmim.engine.distributed import DistEnv, gather_to_main
from mixmim.engine.precision import autocast
from mixmim.engine.progress import interactive
from mixmim.evaluate.loaders import eval_loader, shard_indices


def pooled_features(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, C]: final tokens, final norm, global average pool (``forward_head(pre_logits)``)."""
    return backbone.forward_head(backbone.forward_token_features(images), pre_logits=True)


@torch.no_grad()
def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    env: DistEnv | None = None,
    num_workers: int = 0,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features of every image of ``dataset`` with ``backbone`` in eval mode.

    With several ranks, each extracts its strided shard and rank 0 reassembles them in dataset order; the
    other ranks get empty tensors.

    Returns:
        ``(features [N, C] float32 on the CPU, labels [N] int64)``.
    """
    env = env or DistEnv()
    backbone.eval()
    feats, labels = [], []
    loader = eval_loader(dataset, batch_size, env, num_workers)
    for batch in tqdm(loader, desc=desc, disable=not (env.is_main and interactive()), leave=False, dynamic_ncols=True):
        images, targets, _ = unpack_batch(batch)
        with autocast(precision, device):
            out = pooled_features(backbone, images.to(device, non_blocking=True))
        feats.append(out.float().cpu())  # [B, C]
        labels.append(torch.as_tensor(targets, dtype=torch.int64))
    local = (torch.cat(feats), torch.cat(labels))
    if env.world_size == 1:
        return local
    shards = gather_to_main(local)
    if not env.is_main:
        return torch.empty(0), torch.empty(0, dtype=torch.int64)
    n = sum(len(s[1]) for s in shards)
    out_feats = torch.empty(n, shards[0][0].shape[1])
    out_labels = torch.empty(n, dtype=torch.int64)
    for rank, (f, y) in enumerate(shards):
        index = torch.as_tensor(list(shard_indices(n, DistEnv(rank, env.world_size))))
        out_feats[index], out_labels[index] = f, y
    return out_feats, out_labels
