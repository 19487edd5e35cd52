"""COCO transfer: the detection adapter on the shared backbones, the built-in (torchvision) and detectron2
engines, and the ``coco`` stage (``docs/coco.md``)."""

from mixmim.transfer.adapter import PyramidAdapter, build_adapter
from mixmim.transfer.layout import ATTENTION_LAYOUTS, global_blocks
from mixmim.transfer.recipes import PAPER_NUMBERS, coco_debug_overrides, coco_paper_overrides
from mixmim.transfer.stage import STAGE, run_coco
from mixmim.transfer.weights import load_pretrained, map_encoder_keys

__all__ = [
    "ATTENTION_LAYOUTS", "PAPER_NUMBERS", "STAGE", "PyramidAdapter", "build_adapter", "coco_debug_overrides",
    "coco_paper_overrides", "global_blocks", "load_pretrained", "map_encoder_keys", "run_coco",
]
