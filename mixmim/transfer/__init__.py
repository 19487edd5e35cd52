"""COCO transfer: the detection adapter on the shared backbones, the built-in (torchvision) and detectron2
engines, and the ``coco`` stage (``docs/coco.md``).

The names below load with their module on first use (``lazy_loader``), so that the ``coco`` experiment's
recipe (``recipes``, ``layout``: no torch) is read by ``mixmim-bench list``/``show`` without the model stack.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "adapter": ["PyramidAdapter", "build_adapter"],
    "layout": ["ATTENTION_LAYOUTS", "global_blocks"],
    "recipes": ["PAPER_NUMBERS", "coco_debug_overrides", "coco_paper_overrides"],
    "stage": ["STAGE", "run_coco"],
    "weights": ["load_pretrained", "map_encoder_keys"],
})
