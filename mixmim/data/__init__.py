"""Datasets, transforms, samplers and loaders. Samples are ``(image, label, corrupt)`` triples."""

from mixmim.data.build import DATASETS, build_crop_set, build_dataset, build_pretrain_set, dataset_root
from mixmim.data.digits import DigitsDataset
from mixmim.data.fingerprint import dataset_counts, dataset_fingerprint
from mixmim.data.folder import CorruptImageError, DatasetLayoutError, ImageFolderDataset
from mixmim.data.loader import build_loader, unpack_batch
from mixmim.data.mixup import build_mixup, finetune_criterion
from mixmim.data.sampler import ResumableSampler, eval_sampler
from mixmim.data.transforms import eval_transform, finetune_transform, pretrain_transform

__all__ = [
    "DATASETS",
    "CorruptImageError",
    "DatasetLayoutError",
    "DigitsDataset",
    "ImageFolderDataset",
    "ResumableSampler",
    "build_crop_set",
    "build_dataset",
    "build_pretrain_set",
    "build_loader",
    "build_mixup",
    "dataset_counts",
    "dataset_fingerprint",
    "dataset_root",
    "eval_sampler",
    "eval_transform",
    "finetune_criterion",
    "finetune_transform",
    "pretrain_transform",
    "unpack_batch",
]
