"""Classification accuracy of a model over a labelled dataset: top-1/top-5 (percent) and cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from mixmim.data import unpack_batch
from mixmim.engine.distributed import DistEnv, all_reduce_sum
from mixmim.engine.precision import autocast
from mixmim.engine.progress import interactive
from mixmim.evaluate.loaders import eval_loader


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many rows of ``scores`` [N, C] have their label [N] among the ``k`` highest scores, per ``k``.

    ``k`` is capped at ``C`` (top-5 of a 3-class problem is top-3).
    """
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # [N, kmax], best first
    hits = top.eq(labels.view(-1, 1))  # [N, kmax]
    return [int(hits[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    env: DistEnv | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """Top-1/top-5 accuracy in percent and mean cross-entropy of ``model`` (images -> logits) on ``dataset``.

    Runs ``model.eval()``; each rank evaluates its shard and the counts are summed over ranks.

    Returns:
        ``{"top1", "top5", "loss", "images"}``.
    """
    env = env or DistEnv()
    model.eval()
    correct1 = correct5 = loss_sum = count = 0.0
    loader = eval_loader(dataset, batch_size, env, num_workers)
    show = env.is_main and interactive()
    for batch in tqdm(loader, desc="evaluate", disable=not show, leave=False, dynamic_ncols=True):
        images, labels, _ = unpack_batch(batch)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(precision, device):
            logits = model(images)
        logits = logits.float()  # [B, classes]
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        c1, c5 = topk_correct(logits, labels, (1, 5))
        correct1, correct5, count = correct1 + c1, correct5 + c5, count + len(labels)
    local = (correct1, correct5, loss_sum, count)
    correct1, correct5, loss_sum, count = (all_reduce_sum(v, device) for v in local)
    if count == 0:
        raise ValueError("evaluation dataset is empty")
    return {
        "top1": 100.0 * correct1 / count,
        "top5": 100.0 * correct5 / count,
        "loss": loss_sum / count,
        "images": int(count),
    }
