"""The paper's MixMIM-B ablations (300 pre-training epochs + fine-tuning each), one experiment per table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from experiments.definitions.recipes import IMAGENET_FINETUNE, IMAGENET_PRETRAIN, replaced, scaled, variant_tables
from experiments.spec import Experiment, make_run
from reports.spec import Column, TableSpec
from reports.verdicts import Finding

PAPER = "MixMIM paper (arXiv 2205.13137), ablation section"


class Ablation(NamedTuple):
    """One ablation table: the ablated config key and values, the paper's arm and its finding about it."""

    description: str
    key: str  # the config key ablated
    values: Sequence[Any]
    setting: str  # the run's setting name (row key ``setting.<setting>``)
    baseline: Any  # the paper's choice: the differences table's baseline row, the finding's winner
    claim: str  # the paper's finding: ``baseline`` beats every other value


ABLATIONS: dict[str, Ablation] = {
    "ablation-mask-type": Ablation("what fills the masked cells: the other image (mixing), [MASK], zero, noise",
                                   "method.mask_type", ("mix", "mask_token", "zero", "noise"), "mask_type", "mix",
                                   "mixing beats the [MASK] token, zero and noise fillers"),
    "ablation-dual-reconstruction": Ablation("dual vs single reconstruction", "method.dual_reconstruction",
                                             (True, False), "dual_reconstruction", True,
                                             "dual reconstruction beats single reconstruction"),
    "ablation-mask-strategy": Ablation("random vs block masking at the 32-px mask unit", "method.mask_strategy",
                                       ("random", "block"), "mask_strategy", "random",
                                       "random masking beats block masking"),
    "ablation-mask-ratio": Ablation("mask ratio 0.25 to 0.75", "method.mask_ratio", (0.25, 0.375, 0.5, 0.625, 0.75),
                                    "mask_ratio", 0.5, "mask ratio 0.5 is best"),
    "ablation-mix-embedding": Ablation("mix embedding vs masked self-attention", "method.mix_embedding",
                                       (False, True), "mix_embedding", False,
                                       "masked self-attention (mix_embedding=false) beats mix embedding"),
}


def _label(value: Any) -> str:
    """A row label as the report writes it (booleans lower-case, as YAML)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def ablation_tables(name: str, spec: Ablation) -> list[TableSpec]:
    """The values table (top-1 with 95% intervals beside the paper's) and the differences table (each value's
    paired difference to the paper's choice, with the finding's verdict)."""
    rows = (f"setting.{spec.setting}",)
    reference = f"mixmim_ablation_{spec.setting}_{{setting.{spec.setting}}}_top1"
    top1 = Column("finetune", "top1", "Top-1", reference=reference)
    values = TableSpec(name=spec.setting, title=f"MixMIM-B ablation: {spec.description}", rows=rows,
                       columns=(top1, Column("pretrain", "loss", "Pre-train loss", digits=3)),
                       caption="MixMIM paper ablations (300 ep); paper values to be transcribed where missing.")
    finding = Finding.best(spec.claim, f"{PAPER} (reports/references/ablations.yaml notes)", _label(spec.baseline),
                           [_label(v) for v in spec.values if v != spec.baseline])
    differences = TableSpec(name=f"{spec.setting}_differences", kind="differences", rows=rows,
                            title=f"MixMIM-B ablation ({name}): paired differences to {spec.setting}="
                                  f"{_label(spec.baseline)}",
                            columns=(top1,), baseline={rows[0]: spec.baseline}, findings=(finding,))
    return [values, differences]


def ablation(name: str, variant: str = "full") -> Experiment:
    spec = ABLATIONS[name]
    description, key, setting = spec.description, spec.key, spec.setting
    runs = []
    for value in spec.values:
        overrides, bb = scaled({**IMAGENET_PRETRAIN, **IMAGENET_FINETUNE, "pretrain.epochs": 300, key: value},
                               variant, "mixmim_base")
        runs.append(make_run(name, "mixmim", bb, ("pretrain", "finetune"), setting={setting: value},
                             overrides=overrides, replaces=replaced(variant, key)))
    tables = variant_tables(ablation_tables(name, spec), variant)
    return Experiment(name, f"MixMIM-B ablation: {description}", runs, tables, variant, sets=tuple(overrides))
