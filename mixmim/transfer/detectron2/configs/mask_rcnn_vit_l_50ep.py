"""ViT-L/16 (MAE, BEiT, SimMIM): Mask R-CNN on COCO, ViTDet's recipe (LSJ, AdamW, layer decay, AMP), 50 epochs.

Train with detectron2's launcher, giving the pre-trained backbone (a run's pretrain/encoder.pth or an official
checkpoint)::

    python tools/lazyconfig_train_net.py --num-gpus 8 \
        --config-file mixmim/transfer/detectron2/configs/mask_rcnn_vit_l_50ep.py \
        model.backbone.init_checkpoint=/path/to/encoder.pth

The ``coco`` stage builds the same config from the run's settings (``mixmim.transfer.recipes``).
"""

from mixmim.transfer.detectron2.recipe import paper_config

_nodes = paper_config("mixmim_vit_large_patch16", epochs=50)
model = _nodes["model"]
dataloader = _nodes["dataloader"]
optimizer = _nodes["optimizer"]
lr_multiplier = _nodes["lr_multiplier"]
train = _nodes["train"]
