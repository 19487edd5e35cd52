"""COCO evaluation with pycocotools (``COCOeval``, bbox and segm) and the stage's metric names.

Metric names (both engines): ``ap_box``, ``ap_box50``, ``ap_box75``, ``ap_box_s``, ``ap_box_m``, ``ap_box_l``
and the same with ``ap_mask``; values in percent (COCO's AP x 100), as papers print them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

log = logging.getLogger(__name__)

# COCOeval.stats[0:6] and detectron2's COCOEvaluator keys, in the same order.
STAT_SUFFIXES = ("", "50", "75", "_s", "_m", "_l")
D2_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = {"bbox": "ap_box", "segm": "ap_mask"}


def metric_names() -> list[str]:
    """Every metric the stage reports."""
    return [prefix + s for prefix in IOU_TYPES.values() for s in STAT_SUFFIXES]


def predictions_to_coco(image_id: int, output: dict[str, torch.Tensor], category_ids: list[int],
                        mask_threshold: float = 0.5) -> tuple[list[dict], list[dict]]:
    """One torchvision Mask R-CNN output -> (bbox results, segm results) in COCO's result format.

    Args:
        output: ``boxes`` [N, 4] x1y1x2y2, ``scores`` [N], ``labels`` [N] (1..K), ``masks`` [N, 1, H, W] probs.
        category_ids: COCO category id of label ``k`` at index ``k - 1``.
    """
    boxes = output["boxes"].detach().cpu().numpy()
    scores = output["scores"].detach().cpu().numpy()
    labels = output["labels"].detach().cpu().numpy()
    masks = (output["masks"][:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
    bbox_results, segm_results = [], []
    for box, score, label, mask in zip(boxes, scores, labels, masks):
        base = {"image_id": int(image_id), "category_id": category_ids[int(label) - 1], "score": float(score)}
        x1, y1, x2, y2 = (float(v) for v in box)
        bbox_results.append({**base, "bbox": [x1, y1, x2 - x1, y2 - y1]})
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        segm_results.append({**base, "segmentation": rle})
    return bbox_results, segm_results


def _evaluate(coco_gt: COCO, results: list[dict], iou_type: str, image_ids: list[int]) -> np.ndarray:
    """COCOeval stats (12 numbers, fractions); all zeros when there is no detection at all."""
    if not results:
        log.warning("no %s detections: AP is 0", iou_type)
        return np.zeros(12)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    log.info("COCOeval %s:\n%s", iou_type, buffer.getvalue())
    return np.asarray(evaluator.stats)


def coco_metrics(coco_gt: COCO, bbox_results: list[dict], segm_results: list[dict],
                 image_ids: list[int]) -> dict[str, float]:
    """``ap_box*`` and ``ap_mask*`` in percent (COCOeval reports -1 for an empty size bin: kept as NaN)."""
    metrics: dict[str, float] = {}
    for iou_type, results in (("bbox", bbox_results), ("segm", segm_results)):
        stats = _evaluate(coco_gt, results, iou_type, image_ids)
        for suffix, value in zip(STAT_SUFFIXES, stats[:6]):
            metrics[IOU_TYPES[iou_type] + suffix] = float(value) * 100 if value >= 0 else float("nan")
    return metrics


def metrics_from_detectron2(results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """detectron2 ``COCOEvaluator`` results (``{"bbox": {"AP": ...}, "segm": {...}}``, already in percent)
    -> the stage's metric names. Without any detection detectron2 reports NaN everywhere; that is AP 0, as
    :func:`coco_metrics` reports it."""
    metrics: dict[str, Any] = {}
    for iou_type, prefix in IOU_TYPES.items():
        task = results.get(iou_type, {})
        values = [float(task.get(key, float("nan"))) for key in D2_KEYS]
        if all(math.isnan(v) for v in values):
            log.warning("no %s detections: AP is 0", iou_type)
            values = [0.0] * len(values)
        metrics.update({prefix + suffix: v for suffix, v in zip(STAT_SUFFIXES, values)})
    return metrics
