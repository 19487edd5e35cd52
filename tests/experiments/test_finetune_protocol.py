"""fixed-encoder's fine-tuning protocols: ``shared`` (MixMIM's recipe for every method, the default) and ``own``
(each method's official recipe, from the shared runs' pre-training through ``init=run:<base>``)."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from baselines.registry import CARDS
from experiments.cli import main
from experiments.definitions.imagenet import OWN_SETS
from experiments.deviations import official_recipe
from experiments.recipe_table import FIELD_KEYS, declared_fields, resolved_recipe
from experiments.registry import get_experiment
from experiments.seeds import replicate
from experiments.spec import finetune_defaults
from mixmim.runs.rundir import sibling_encoder
from mixmim.weights.init_source import InitWeightsError, resolve_init
from reports.references import load_references

OWN_REFS = {(r.method, r.stage): r for r in load_references().recipes.values() if r.method}


def _differs(run_value, ref_value) -> bool:
    if isinstance(ref_value, float):
        return not math.isclose(float(run_value), ref_value, rel_tol=1e-6)
    return run_value != ref_value


@pytest.mark.parametrize("variant", ["full", "debug", "small"])
def test_own_runs_fine_tune_the_shared_runs_encoders_with_their_methods_recipe(variant):
    """Each own run is its shared sibling's probe and fine-tuning (same method, backbone, pre-training config),
    initialised from that sibling's encoder, with the method's own fine-tuning recipe: every recipe field equals
    the method's fine-tuning reference (recipes.yaml) except the budget the experiment declares."""
    shared, own = get_experiment("fixed-encoder", variant), get_experiment("fixed-encoder", variant, "own")
    assert len(own.runs) == len(shared.runs) == len(CARDS) * 2  # every method on MixMIM-B and ViT-B
    declared = declared_fields(own.sets, "finetune")
    assert declared <= {"epochs", "effective_batch", "lr", "precision", "warmup_epochs"}  # debug: no warm-up
    for sibling, cfg in zip(shared.runs, own.runs, strict=True):
        assert cfg.name == sibling.name.replace("-s0", "-finetuneown-s0")
        assert cfg.init == "run:" + sibling.name.removesuffix("-s0") and cfg.stages == ["linprobe", "finetune"]
        assert (cfg.method, cfg.pretrain, cfg.model.backbone, cfg.data) == (
            sibling.method, sibling.pretrain, sibling.model.backbone, sibling.data)
        for key, value in finetune_defaults(cfg.method.name, cfg.model.backbone).items():
            section, name = key.split(".")
            if f"{section}.{name}" not in own.sets:
                got = getattr(getattr(cfg, section), name)
                assert (list(got) if isinstance(got, tuple) else got) == value, (cfg.name, key)
        ref = OWN_REFS.get((cfg.method.name, "finetune"))
        assert ref is not None, cfg.method.name  # every method has its fine-tuning reference
        ref = official_recipe(ref, cfg.model.backbone)  # MAE's head and probe differ on the hierarchical backbone
        run = resolved_recipe(cfg, "finetune")
        undeclared = {f: (run[f], getattr(ref, f)) for f in FIELD_KEYS if getattr(ref, f) is not None
                      and _differs(run[f], getattr(ref, f)) and f not in declared}
        assert not undeclared, (cfg.name, undeclared)
    assert not {k for k in own.sets if k.startswith("finetune.")} - set(OWN_SETS) - (
        {"finetune.warmup_epochs", "finetune.max_steps", "finetune.mixup", "finetune.cutmix", "finetune.randaug",
         "finetune.reprob"} if variant == "debug" else set())
    assert [t.filters for t in own.tables] == [{"setting.finetune": "own"}] * 2
    assert [t.filters for t in shared.tables] == [{"setting.finetune": None}] * 2


def test_shared_protocol_is_unchanged_and_own_is_fixed_encoder_only():
    """The default is the shared protocol, with the runs and names it always had; only fixed-encoder has a
    choice; an unknown protocol is refused with the choices."""
    exp = get_experiment("fixed-encoder")
    assert "finetune" not in exp.runs[0].setting and exp.runs[0].name == "mixmim-mixmim_base-encoderMixMIM-B-s0"
    assert exp.runs[0].stages == ["pretrain", "linprobe", "finetune"] and exp.runs[0].init == "pretrain"
    with pytest.raises(KeyError, match="has no --finetune-protocol own; those that do: fixed-encoder"):
        get_experiment("smoke", "debug", "own")
    with pytest.raises(KeyError, match="choose one of shared, own"):
        get_experiment("fixed-encoder", "debug", "mine")


def test_seed_replicas_point_at_the_same_seed(tmp_path):
    """``init=run:<base>`` resolves to the sibling of the run's own seed (replicate renames runs per seed)."""
    exp = replicate(get_experiment("fixed-encoder", "debug", "own"), (0, 2))
    run = next(c for c in exp.runs if c.seed == 2)
    path = sibling_encoder(run.init, tmp_path / run.name, run.seed)
    assert path == tmp_path / (run.init.removeprefix("run:") + "-s2") / "pretrain" / "encoder.pth"
    with pytest.raises(InitWeightsError, match="does not exist: run that run's 'pretrain' stage first"):
        resolve_init(run.init, tmp_path / run.name, run.seed)
    with pytest.raises(InitWeightsError, match="a run of the same experiment folder"):
        resolve_init("run:../x", tmp_path / run.name, 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert resolve_init(run.init, tmp_path / run.name, run.seed).path == path


def test_show_names_the_protocol_and_each_methods_recipe(capsys):
    assert main(["show", "fixed-encoder", "--finetune-protocol", "own"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("own fine-tuning protocol: each method's official recipe")
    details = out[out.index("## fine-tuning details"):out.index("## run ")]
    simmim = next(line for line in details.splitlines() if line.startswith("| simmim-mixmim_base"))
    assert "0.8 (swin)" in simmim and " 5 |" in simmim and "2.5e-07 / 2.5e-07 x batch/base" in simmim
    mae = next(line for line in details.splitlines() if line.startswith("| mae-mixmim_vit"))
    assert "0.65 (backbone)" in mae and "mean, fc_norm" in mae and "trained" in mae and "cls_token, mae crop" in mae
    recipes = out[:out.index("## fine-tuning details")]
    beit = next(line for line in recipes.splitlines() if line.startswith("| beit-mixmim_vit"))
    assert "0.001 @ 256" in beit and " 20 |" in beit and "beit_cosine" in beit


def test_own_protocol_end_to_end(tmp_path, capsys):
    """MAE on the ViT: the own run refuses to start before its sibling is pre-trained; then it probes and
    fine-tunes the sibling's encoder (MAE's cls-token probe and crop, trained pos_embed, layer decay 0.65), and
    each protocol's report reads only its own runs, in its own bundle."""
    common = ["fixed-encoder", "--variant", "debug", "--output", str(tmp_path), "--only", "mae-mixmim_vit*"]
    own = [*common, "--finetune-protocol", "own"]
    assert main(["run", *own]) == 2
    assert "have not pre-trained the encoder that the own protocol fine-tunes" in capsys.readouterr().err
    assert main(["run", *common]) == 0 and main(["run", *own]) == 0
    capsys.readouterr()
    folder = tmp_path / "fixed-encoder-debug"
    sibling = folder / "mae-mixmim_vit_tiny_patch4_32-encoderViT-B_16-s0"
    mine = folder / "mae-mixmim_vit_tiny_patch4_32-encoderViT-B_16-finetuneown-s0"
    assert not (mine / "pretrain").exists()
    for stage in ("linprobe", "finetune"):
        result = json.loads((mine / stage / "result.json").read_text())
        assert result["init_path"] == str(sibling / "pretrain" / "encoder.pth")
    probe = json.loads((mine / "linprobe" / "result.json").read_text())
    assert (probe["features"], probe["crop"]) == ("cls_token", "mae")
    tuned = json.loads((mine / "finetune" / "result.json").read_text())
    assert (tuned["layer_decay"], tuned["fc_norm"], tuned["train_pos_embed"]) == (0.65, True, True)
    shared = json.loads((sibling / "finetune" / "result.json").read_text())
    assert (shared["layer_decay"], shared["fc_norm"], shared["train_pos_embed"]) == (0.7, False, False)
    assert main(["report", *own, "--format", "csv"]) == 0
    own_csv = capsys.readouterr().out
    assert main(["report", *common, "--format", "csv"]) == 0
    shared_csv = capsys.readouterr().out
    for text, table, run in ((own_csv, "fixed_encoder_own", mine), (shared_csv, "fixed_encoder", sibling)):
        rows = pd.read_csv(io.StringIO(text))
        cell = rows[(rows["table"] == table) & (rows["stage"] == "linprobe") & (rows["metric"] == "top1")]
        assert len(cell) == 1 and cell["n"].item() == 1, table  # one run: the other protocol's is not mixed in
        expected = json.loads((run / "linprobe" / "result.json").read_text())["metrics"]["top1"]
        assert cell["mean"].item() == pytest.approx(expected, abs=0.01), table
        assert set(rows["table"].dropna()) <= {table, table.replace("fixed_encoder", "fixed_encoder_differences")}
    for bundle, name, other in ((folder / "_report" / "finetune-own" / "fixed-encoder-debug-report", mine.name,
                                 sibling.name), (folder / "_report" / "fixed-encoder-debug-report", sibling.name,
                                                 mine.name)):
        configs = (bundle / "runs" / "configs.yaml").read_text()  # the bundle holds this protocol's runs only
        assert f"name: {name}" in configs and f"name: {other}" not in configs
        assert (bundle / "report.html").is_file()


@pytest.mark.parametrize(("variant", "epochs"), [("debug", "1"), ("full", "300")])
def test_fixed_encoder_tables_state_the_planned_pretraining_not_a_fixed_one(variant, epochs):
    for protocol in ("shared", "own"):
        table = get_experiment("fixed-encoder", variant, protocol).tables[0]
        assert "300" not in table.title and f"planned by the {variant} variant: {epochs};" in table.caption


@pytest.mark.parametrize("command", ["show", "run"])
def test_a_budget_with_the_own_protocol_is_refused(command, tmp_path, capsys):
    """Own runs inherit the shared runs' pre-training by name, which a budget does not change: refused."""
    argv = [command, "fixed-encoder", "--variant", "debug", "--finetune-protocol", "own", "--budget", "gpu-hours=500",
            "--output", str(tmp_path)]
    assert main(argv + (["--dry-run"] if command == "run" else [])) == 2
    err = capsys.readouterr().err
    assert "--budget gpu-hours=500 does not go with --finetune-protocol own" in err and "then the own protocol" in err
    assert not any(tmp_path.iterdir())


def test_the_own_protocol_before_the_shared_one_names_every_missing_sibling_and_the_command(tmp_path, capsys):
    argv = ["run", "fixed-encoder", "--variant", "debug", "--output", str(tmp_path), "--only", "mae-*", "--seeds", "2",
            "--finetune-protocol", "own", "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    bases = ("mixmim_tiny_32-encoderMixMIM-B", "mixmim_vit_tiny_patch4_32-encoderViT-B_16")
    siblings = [f"mae-{base}-s{seed}" for base in bases for seed in (0, 1)]
    assert all(err.count(f"  {name} (") == 1 for name in siblings), err
    assert err.count("first") == 1 and "4 run(s)" in err
    assert f"`mixmim-bench run fixed-encoder --variant debug --output {tmp_path} --only 'mae-*' --seeds 2`" in err
