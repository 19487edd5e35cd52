"""Each run's resolved optimiser recipe, what its experiment declares, and the compact table ``show`` prints.

A run's pre-training and fine-tuning recipe is its method's own (``baselines/registry.py``, checked against
``reports/references/recipes.yaml``) except for the fields its experiment sets for every method
(``Experiment.sets``): :func:`declared_fields` maps those config keys to recipe fields; a field derived from a
declared one is declared with it (the absolute lr follows the batch).
"""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from experiments.spec import Experiment
from mixmim.config import RunConfig
from mixmim.config import world_size as launch_world_size

RECIPE_STAGES = ("pretrain", "finetune")
RECIPE_NOTE = ("batch: effective (per rank x accumulation x ranks); lr: absolute peak (blr x batch / base unless set); "
               "fine-tuning betas are AdamW's default. * = set by the experiment for every method; every other "
               "field is the method's own recipe.")
# Recipe field -> the config keys of its stage (``{s}``) or of the run that it follows from.
_BATCH_KEYS = ("{s}.batch_size", "{s}.accum_iter", "launch.nodes", "launch.gpus_per_node", "launch.tasks_per_node")
FIELD_KEYS: dict[str, tuple[str, ...]] = {
    "epochs": ("{s}.epochs",),
    "warmup_epochs": ("{s}.warmup_epochs",),
    "schedule": ("{s}.schedule",),
    "effective_batch": _BATCH_KEYS,
    "blr": ("{s}.blr",),
    "lr_scale_base": ("{s}.lr_scale_base",),
    "lr": ("{s}.lr", "{s}.blr", "{s}.lr_scale_base", *_BATCH_KEYS),  # blr x batch / base, or set directly
    "betas": ("{s}.betas",),
    "weight_decay": ("{s}.weight_decay",),
    "precision": ("{s}.precision",),
    # fine-tuning beyond the budget (and its linear probe): each method's own recipe in the ``own`` protocol
    "min_lr": ("{s}.min_lr",),
    "warmup_lr": ("{s}.warmup_lr",),
    "layer_decay": ("{s}.layer_decay",),
    "clip_grad": ("{s}.clip_grad",),
    "fc_norm": ("model.fc_norm",),
    "train_pos_embed": ("model.train_pos_embed",),
    "probe_features": ("linprobe.features",),
    "probe_crop": ("linprobe.crop",),
}
FINETUNE_FIELDS = ("layer_decay", "fc_norm", "train_pos_embed", "probe_features", "probe_crop")  # fine-tuning's only


def world_size(cfg: RunConfig) -> int:
    """Processes (ranks) a run launches with: ``launch.nodes x`` :func:`mixmim.runs.rendezvous.tasks_per_node`."""
    return launch_world_size(cfg.launch)


def resolved_recipe(cfg: RunConfig, stage: str) -> dict[str, Any]:
    """The recipe fields of ``stage`` as the run will train them (the recipes.yaml field names).

    ``precision`` stays as configured (``auto`` resolves per device only when the stage starts). The fields of
    :data:`FINETUNE_FIELDS` are None outside fine-tuning, the probe's also when the run has no linear probe.
    """
    section = getattr(cfg, stage)
    batch = section.batch_size * getattr(section, "accum_iter", 1) * world_size(cfg)
    finetune, probe = stage == "finetune", stage == "finetune" and "linprobe" in cfg.stages  # FINETUNE_FIELDS
    return {
        "epochs": section.epochs,
        "warmup_epochs": section.warmup_epochs,
        "schedule": section.schedule,
        "effective_batch": batch,
        "blr": section.blr,
        "lr_scale_base": section.lr_scale_base,
        "lr": section.lr if section.lr > 0 else section.blr * batch / section.lr_scale_base,
        "betas": tuple(section.betas) if hasattr(section, "betas") else None,
        "weight_decay": section.weight_decay,
        "precision": section.precision,
        "min_lr": section.min_lr,
        "warmup_lr": getattr(section, "warmup_lr", None),
        "layer_decay": section.layer_decay if finetune else None,
        "clip_grad": section.clip_grad,
        "fc_norm": cfg.model.fc_norm if finetune else None,
        "train_pos_embed": cfg.model.train_pos_embed if finetune else None,
        "probe_features": cfg.linprobe.features if probe else None,
        "probe_crop": cfg.linprobe.crop if probe else None,
    }


def declared_fields(sets: tuple[str, ...] | list[str], stage: str) -> set[str]:
    """The recipe fields of ``stage`` that config keys ``sets`` (an experiment's declaration) decide."""
    keys = set(sets)
    return {name for name, templates in FIELD_KEYS.items() if any(t.format(s=stage) in keys for t in templates)
            and (stage == "finetune" or name not in FINETUNE_FIELDS)}


def _lr(value: float) -> str:
    return f"{value:.3g}"


def recipe_rows(exp: Experiment) -> list[dict[str, Any]]:
    """One row per run and recipe stage it runs; a declared field (set for every method) is marked ``*``."""
    rows = []
    for cfg in exp.runs:
        for stage in RECIPE_STAGES:
            if stage not in cfg.stages:
                continue
            r = resolved_recipe(cfg, stage)
            declared = declared_fields(exp.sets, stage)

            def mark(field: str, text: Any, declared: set[str] = declared) -> str:
                return f"{text}*" if field in declared else str(text)

            rows.append({
                "run": cfg.name, "method": cfg.method.name, "stage": stage,
                "epochs": mark("epochs", r["epochs"]),
                "batch": mark("effective_batch", r["effective_batch"]),
                "blr @ base": f"{mark('blr', _lr(r['blr']))} @ {mark('lr_scale_base', r['lr_scale_base'])}",
                "lr": mark("lr", _lr(r["lr"])),
                "betas": mark("betas", ", ".join(f"{b:g}" for b in r["betas"])) if r["betas"] else "(0.9, 0.999)",
                "warmup": mark("warmup_epochs", r["warmup_epochs"]),
                "schedule": mark("schedule", r["schedule"]),
                "wd": mark("weight_decay", f"{r['weight_decay']:g}"),
                "precision": mark("precision", r["precision"]),
            })
    return rows


def recipe_table(exp: Experiment) -> str:
    """The compact recipe table of ``mixmim-bench show`` (GitHub markdown)."""
    rows = recipe_rows(exp)
    if not rows:
        return "(no pre-training or fine-tuning stage)"
    return tabulate(rows, headers="keys", tablefmt="github") + "\n\n" + RECIPE_NOTE


def _head(cfg: RunConfig) -> str:
    """The fine-tuning head: the mean of the final tokens after the final norm, or before ``fc_norm``."""
    return "mean, fc_norm" if cfg.model.fc_norm else "norm, mean"


def finetune_rows(exp: Experiment) -> list[dict[str, Any]]:
    """One row per run that fine-tunes: the fine-tuning recipe beyond the compact table (layer decay and its
    rule, clipping, warm-up start and floor, head, position embedding) and its linear probe's features and crop."""
    rows = []
    for cfg in exp.runs:
        if "finetune" not in cfg.stages:
            continue
        ft, lp = cfg.finetune, cfg.linprobe
        floors = f"{ft.warmup_lr:g} / {ft.min_lr:g}" + (" x batch/base" if ft.scale_floor_lrs else "")
        rows.append({
            "run": cfg.name, "layer decay": f"{ft.layer_decay:g} ({ft.layer_rule})", "clip": f"{ft.clip_grad:g}",
            "warm-up start / floor": floors, "drop path": f"{ft.drop_path:g}", "head": _head(cfg),
            "pos_embed": "trained" if cfg.model.train_pos_embed else "fixed",
            "probe": f"{lp.features}, {lp.crop} crop" if "linprobe" in cfg.stages else "",
        })
    return rows


def finetune_table(exp: Experiment) -> str:
    """The fine-tuning details of ``mixmim-bench show`` (GitHub markdown); empty without a fine-tuning stage."""
    rows = finetune_rows(exp)
    return tabulate(rows, headers="keys", tablefmt="github") if rows else ""
