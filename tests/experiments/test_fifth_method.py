"""A fifth method is one card: registered by its module alone, it appears in every table keyed by method.

The toy card (``toy_cards/toy.py``) joins ``baselines.cards`` in a child process (its import-time tables are built
there, and nothing of it is left in this one): the closed set of ``method.name``, the labels, the smoke and
fixed-encoder grids and the catalog's counts, the FLOP table and the cost projection, the recipe table, the loss
kinds of the review page, the FLOP script's entries and the builder registry, all without a line changed elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = r"""
import importlib.util, json, sys
import baselines.cards
baselines.cards.__path__.append(sys.argv[1])  # the toy card joins the discovered package
from pathlib import Path
from baselines.registry import CARDS, METHODS, method_defaults, pretrain_losses
from experiments.catalog import CATALOG
from experiments.cost import PRETRAIN_GFLOPS, project_costs
from experiments.definitions.recipes import METHOD_LABELS
from experiments.recipe_table import recipe_rows
from experiments.registry import get_experiment
from mixmim.config import CHOICES, ConfigError, RunConfig, apply_overrides
from reports.curves import loss_kind

out = {"cards": list(CARDS), "methods": list(METHODS), "choices": list(CHOICES["method.name"]),
       "labels": METHOD_LABELS, "gflops": {f"{m}/{b}": v for (m, b), v in PRETRAIN_GFLOPS.items() if m == "toy"},
       "loss": loss_kind("pretrain", "toy", pretrain_losses()),
       "vit_recipe": method_defaults("toy", "mixmim_vit_base_patch16")}
try:
    apply_overrides(RunConfig(), ["method.name=toyy"])
except ConfigError as err:
    out["typo"] = str(err)
for name in ("smoke", "fixed-encoder"):
    full, debug = get_experiment(name, "full"), get_experiment(name, "debug")
    out[name] = {"catalog": list(CATALOG[name]), "built": [full.description, len(full.runs), len(debug.runs)],
                 "toy_runs": [cfg.name for cfg in full.runs if cfg.method.name == "toy"]}
exp = get_experiment("fixed-encoder", "full")
out["recipe_rows"] = [r["blr @ base"] for r in recipe_rows(exp) if r["method"] == "toy" and r["stage"] == "pretrain"]
out["costs"] = [c.source for c in project_costs(exp.runs, Path(sys.argv[2])) if c.run.startswith("toy-")
                and c.stage == "pretrain"]
out["smoke_rows"] = list(get_experiment("smoke").tables[0].row_order)
spec = importlib.util.spec_from_file_location("count_flops", sys.argv[3])
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
out["flop_entries"] = [e[:2] for e in script.flop_table_entries() if e[0] == "toy"]
out["torch_before_build"] = "torch" in sys.modules  # every table above is torch-free
from baselines.registry import build_method
cfg = apply_overrides(RunConfig(), {**method_defaults("toy"), **CARDS["toy"].test_settings,
                                    "model.backbone": "mixmim_tiny_32"})
out["built_class"] = type(build_method(cfg)).__name__
print(json.dumps(out))
"""


def test_a_fifth_method_is_one_card_seen_by_every_table(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).with_name("toy_cards")), str(tmp_path),
                           str(ROOT / "scripts" / "count_flops.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["cards"] == out["methods"] == ["mixmim", "mae", "simmim", "beit", "toy"]  # card order
    assert out["choices"] == [*out["cards"], "random"]
    assert "allowed values are mixmim, mae, simmim, beit, toy, random; closest: 'toy'" in out["typo"]
    assert list(out["labels"])[-2:] == ["toy", "random"] and out["labels"]["toy"] == "Toy"
    assert out["smoke_rows"] == ["MixMIM", "MAE", "SimMIM", "BEiT", "Toy", "Random init"]
    assert out["smoke"]["catalog"] == out["smoke"]["built"] and out["smoke"]["built"][1:] == [6, 6]
    assert out["smoke"]["toy_runs"] == ["toy-mixmim_tiny_32-s0"]
    fixed = out["fixed-encoder"]
    described = "MixMIM, MAE, SimMIM, BEiT, Toy on MixMIM-B and ViT-B, equal schedule"
    assert fixed["catalog"] == fixed["built"] == [described, 10, 10]
    assert len(fixed["toy_runs"]) == 2
    assert out["gflops"] == {"toy/mixmim_base": 11.5, "toy/mixmim_vit_base_patch16": 12.5}
    assert len(out["costs"]) == 2 and all("11.5 GFLOPs/img (FLOP table)" in s or "12.5 GFLOPs/img (FLOP table)" in s
                                          for s in out["costs"]), out["costs"]
    assert out["recipe_rows"] == ["0.0002 @ 256"] * 2, out["recipe_rows"]  # the toy's own blr on both encoders
    assert out["vit_recipe"]["model.drop_path"] == 0.05 and out["vit_recipe"]["method.mask_ratio"] == 0.3
    assert out["loss"] == "toy pixel loss"
    assert out["flop_entries"] == [["toy", "mixmim_base"], ["toy", "mixmim_vit_base_patch16"]]
    assert out["torch_before_build"] is False
    assert out["built_class"] == "SimMIM"


def test_the_suites_registry_holds_only_its_own_cards():
    """The child process's toy card left nothing here."""
    from baselines.registry import CARDS

    assert "toy" not in CARDS
