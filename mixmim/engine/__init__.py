"""Training machinery shared by every stage: optimizer groups, schedule, recipe, precision, RNG, checkpoints,
metrics, the non-finite guard, the one training loop (:class:`Trainer`), the stage runner (``stage.py``) and
the run manifest. Pre-training itself (the task and the ``pretrain`` stage) is :mod:`mixmim.pretrain.task`."""

from mixmim.engine.checkpoint import (
    ENCODER,
    LAST,
    TrainPosition,
    atomic_torch_save,
    epoch_checkpoint_name,
    load_checkpoint,
    load_encoder_state,
    remove_partial_checkpoints,
    restore_training_checkpoint,
    save_encoder,
    training_checkpoint,
    unwrap,
)
from mixmim.engine.distributed import DistEnv, default_device, init_distributed
from mixmim.engine.manifest import collect_manifest, git_state, record_manifest, stage_manifest
from mixmim.engine.metrics import MetricsLogger
from mixmim.engine.nonfinite import NonFiniteGuard, NonFiniteLossError, RollbackRequested
from mixmim.engine.optim import (
    absolute_lr,
    build_adamw,
    effective_batch_size,
    layer_decay_param_groups,
    no_weight_decay_names,
    pretrain_param_groups,
    set_lr,
)
from mixmim.engine.precision import autocast, grad_scaler, resolve_precision
from mixmim.engine.recipe import Recipe, make_recipe
from mixmim.engine.rng import capture_rng_state, restore_rng_state, seed_everything
from mixmim.engine.schedule import lr_at_step, schedule_steps
from mixmim.engine.totals import RunningTotals
from mixmim.engine.trainer import Trainer, TrainTask

__all__ = [
    "ENCODER",
    "LAST",
    "DistEnv",
    "MetricsLogger",
    "NonFiniteGuard",
    "NonFiniteLossError",
    "Recipe",
    "RollbackRequested",
    "RunningTotals",
    "TrainPosition",
    "TrainTask",
    "Trainer",
    "absolute_lr",
    "atomic_torch_save",
    "autocast",
    "build_adamw",
    "capture_rng_state",
    "collect_manifest",
    "default_device",
    "effective_batch_size",
    "epoch_checkpoint_name",
    "git_state",
    "grad_scaler",
    "init_distributed",
    "layer_decay_param_groups",
    "load_checkpoint",
    "load_encoder_state",
    "lr_at_step",
    "make_recipe",
    "no_weight_decay_names",
    "pretrain_param_groups",
    "record_manifest",
    "remove_partial_checkpoints",
    "resolve_precision",
    "restore_rng_state",
    "restore_training_checkpoint",
    "save_encoder",
    "schedule_steps",
    "seed_everything",
    "set_lr",
    "stage_manifest",
    "training_checkpoint",
    "unwrap",
]
