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
    assert "2205.13137 v1), Sec. 4" in refs.values["mixmim_b_600ep_coco_ap_box"].source
    assert "14dcb690" in refs.values["mixmim_b_300ep_top1"].source
    added = {"simmim_swin_b_100ep_192px_top1": 82.8, "simmim_swin_b_100ep_top1": 83.5, "simmim_swin_b_800ep_top1": 84.0,
             "simmim_swin_l_800ep_top1": 85.4, "mae_vit_h448_1600ep_top1": 87.8}
    assert {k: refs.values[k].value for k in added} == added
    assert "standard deviation" in refs.noise_floors["coco_ap"].source


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


def _ablation_entry_problems(ref) -> list[str]:
    """The schema of an ablation reference: either still to transcribe (null value, status and source say
    so) or transcribed (a number, no to-transcribe marks, a source naming the paper's table)."""
    if ref.value is None:
        return [] if ref.status == "to_transcribe" and "to transcribe" in ref.source else [
            f"{ref.key}: a null value needs status to_transcribe and 'to transcribe' in its source"]
    problems = []
    if ref.status == "to_transcribe" or "to transcribe" in ref.source:
        problems.append(f"{ref.key}: has a value but is still marked to transcribe")
    if "Table N" in ref.source or "2205.13137" not in ref.source:
        problems.append(f"{ref.key}: a transcribed number names the paper (2205.13137) and its table number")
    if not 0 < ref.value <= 100:
        problems.append(f"{ref.key}: {ref.value} is not a percentage")
    return problems


def test_ablation_references_follow_the_schema() -> None:
    """Every ablation group is present; each entry is either to transcribe (null, never zero) or filled in
    with its table. Filling numbers in does not break this test; a half-filled entry does."""
    refs = load_references()
    ablations = {k: r for k, r in refs.values.items() if k.startswith("mixmim_ablation_")}
    groups = {"mask_ratio", "mask_strategy", "dual_reconstruction", "mix_embedding", "mask_type"}
    assert all(any(k.startswith(f"mixmim_ablation_{g}_") for k in ablations) for g in groups)
    assert [p for r in ablations.values() for p in _ablation_entry_problems(r)] == []


@pytest.mark.parametrize(("changes", "problem"), [
    ({}, None),
    ({"value": 84.1, "status": "", "source": "MixMIM paper (arXiv 2205.13137), Table 5"}, None),
    ({"value": 0.0}, "still marked to transcribe"),
    ({"value": 84.1, "status": "", "source": "MixMIM paper (arXiv 2205.13137), ablation Table N"}, "table number"),
    ({"status": ""}, "null value needs status"),
])
def test_ablation_schema_accepts_filled_entries_and_flags_half_filled(changes, problem) -> None:
    import dataclasses

    ref = load_references().values["mixmim_ablation_mask_ratio_0.5_top1"]
    if ref.value is not None:
        pytest.skip("this entry is transcribed already")
    problems = _ablation_entry_problems(dataclasses.replace(ref, **changes))
    assert (problems == []) if problem is None else (problem in " ".join(problems))


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
