"""MixMIM-B: Mask R-CNN with FPN on COCO, ViTDet's recipe (LSJ 1024 px, AdamW, layer decay, AMP), 50 epochs.

Train with detectron2's launcher, giving the pre-trained backbone (a run's pretrain/encoder.pth or an official
checkpoint)::

    python tools/lazyconfig_train_net.py --num-gpus 8 \
        --config-file mixmim/transfer/detectron2/configs/mask_rcnn_mixmim_b_50ep.py \
        model.backbone.bottom_up.init_checkpoint=/path/to/encoder.pth

The ``coco`` stage builds the same config from the run's settings (``mixmim.transfer.recipes``).
"""

from mixmim.transfer.detectron2.recipe import paper_config

_nodes = paper_config("mixmim_base", epochs=50)
model = _nodes["model"]
dataloader = _nodes["dataloader"]
optimizer = _nodes["optimizer"]
lr_multiplier = _nodes["lr_multiplier"]
train = _nodes["train"]
