"""Reference data: every number has a source, to-transcribe numbers are null, links are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.references import REFERENCES_DIR, ReferenceDataError, load_references


def test_project_references_load_with_sources() -> None:
    refs = load_references()
    assert {p.name for p in refs.files} >= {"mixmim.yaml", "baselines.yaml", "ablations.yaml", "recipes.yaml"}
    assert all(ref.source.strip() for ref in refs.values.values())
    assert refs.values["mixmim_b_600ep_top1"].value == 85.1
    assert refs.values["mae_vit_b_1600ep_top1_4seeds"].std == 0.08
    assert refs.values["mixmim_b_600ep_coco_ap_box"].value == 52.2


def test_paper_recipes_and_noise_floors() -> None:
    refs = load_references()
    pretrain = refs.recipes["mixmim_b_pretrain"]
    assert (pretrain.epochs, pretrain.effective_batch, pretrain.lr, pretrain.precision) == (600, 2048, 1.2e-3, "fp16")
    assert pretrain.lr == pytest.approx(pretrain.blr * pretrain.effective_batch / 256)
    finetune = refs.recipes["mixmim_b_finetune"]
    assert (finetune.epochs, finetune.effective_batch, finetune.lr) == (100, 1024, 2e-3)
    assert refs.noise_floors["finetune_top1"].value == 0.1
    assert refs.noise_floors["coco_ap"].value == 0.1
    assert refs.floor_for(refs.values["mixmim_b_600ep_top1"]).key == "finetune_top1"


def test_ablations_to_transcribe_are_null_not_zero() -> None:
    refs = load_references()
    ablations = {k: r for k, r in refs.values.items() if k.startswith("mixmim_ablation_")}
    groups = {"mask_ratio", "mask_strategy", "dual_reconstruction", "mix_embedding", "mask_type"}
    assert all(any(k.startswith(f"mixmim_ablation_{g}_") for k in ablations) for g in groups)
    assert all(r.value is None and "to transcribe" in r.source for r in ablations.values())


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "refs.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_number_without_source_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match="no source"):
        load_references([_write(tmp_path, "references:\n  x: {value: 1.0}\n")])


def test_unknown_recipe_is_rejected(tmp_path: Path) -> None:
    text = "references:\n  x: {value: 1.0, source: s, recipe: {pretrain: nope}}\n"
    with pytest.raises(ReferenceDataError, match="unknown recipe 'nope'"):
        load_references([_write(tmp_path, text)])


def test_duplicate_key_across_files_is_rejected(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("references:\n  mixmim_b_600ep_top1: {value: 1.0, source: s}\n", encoding="utf-8")
    with pytest.raises(ReferenceDataError, match="duplicate"):
        load_references([*REFERENCES_DIR.glob("*.yaml"), dup])


def test_coco_references_name_engine_and_recipe_and_flag_other_recipes() -> None:
    from mixmim.transfer.recipes import coco_debug_overrides, coco_paper_overrides
    from reports.drift import recipe_drift

    refs = load_references()
    coco = {k: r for k, r in refs.values.items() if r.unit.startswith("AP ")}
    assert len(coco) == 6
    for ref in coco.values():
        assert ref.engine == "detectron2" and ref.recipe == {"coco": "vitdet_coco_100ep"}
    recipe = refs.recipes["vitdet_coco_100ep"]
    assert recipe.stage == "coco"

    def recorded(o: dict) -> dict:  # what the coco stage records (epochs, effective batch, absolute lr)
        lr = o["coco.lr"] or o["coco.blr"] * o["coco.batch_size"] / 64
        return {"epochs": o["coco.epochs"], "effective_batch": o["coco.batch_size"], "lr": lr, "precision": "bf16"}

    assert recipe_drift(recorded(coco_paper_overrides("mixmim_base")), recipe) == []
    assert [f for f, *_ in recipe_drift(recorded(coco_debug_overrides()), recipe)] == ["epochs", "effective_batch",
                                                                                       "lr"]
