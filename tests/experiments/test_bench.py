"""``mixmim-bench bench``: rows, ratios, the results store and the budget conversion reading it."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from experiments.bench import add_ratios
from experiments.budget import BudgetError, measured_images_per_s
from experiments.cli import main
from mixmim.config import RunConfig, apply_overrides

TINY = [
    "--backbone",
    "mixmim_tiny_32",
    "--batch-size",
    "4",
    "--steps",
    "1",
    "--warmup",
    "1",
    "--set",
    "method.mask_unit=8",
    "--set",
    "method.decoder_dim=32",
    "--set",
    "method.decoder_depth=1",
    "--set",
    "method.decoder_heads=1",
    "--threads",
    "1",
]
# Every field a step row had before the bench timed Trainer steps: the report, `speed`, the budget and
# scripts/gpu-check read them, so a row keeps them all.
STEP_ROW_KEYS = {
    "kind", "time", "method", "backbone", "default_path", "grad_checkpointing", "attention", "batch_size",
    "img_size", "precision", "device", "device_name", "optimizer", "compiled", "steps", "warmup", "ms_per_step",
    "ms_min", "ms_max", "images_per_s", "cpu_ms_per_step", "first_step_s", "peak_memory_mib", "memory_kind",
    "params", "forward_gflops_per_image", "train_gflops_per_image", "achieved_tflops", "peak_tflops", "mfu",
    "threads", "repeats_ms_per_step", "torch", "keep_heap", "x_official", "x_release", "cost_vs_ref", "ref_method",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bench_writes_rows_with_ratios_and_the_budget_reads_them(tmp_path, capsys):
    assert main(["bench", "--methods", "mixmim,simmim", *TINY, "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "x official" in out and "grouped" in out
    files = list((tmp_path / "bench").glob("*.jsonl"))
    assert len(files) == 1
    rows = _rows(files[0])
    assert [(r["method"], r["attention"]) for r in rows] == [
        ("mixmim", "grouped"),
        ("mixmim", "official"),
        ("simmim", "grouped"),
        ("simmim", "official"),
    ]
    assert rows[0]["default_path"] and not rows[1]["default_path"]
    assert rows[1]["x_official"] == 1.0 and rows[2]["cost_vs_ref"] == 1.0
    assert all(r["images_per_s"] > 0 and r["forward_gflops_per_image"] > 0 for r in rows)
    assert all(r.keys() >= STEP_ROW_KEYS and r["timed_step"] == "Trainer.train_batch" for r in rows)
    assert all(r["overrides"] == sorted(TINY[i + 1] for i, a in enumerate(TINY) if a == "--set") for r in rows)
    # each method's own recipe: SimMIM clips at 5 (its source), MixMIM does not; both decay / no-decay groups
    assert [(r["method"], r["clip_grad"], r["param_groups"]) for r in rows[1:3]] == [
        ("mixmim", 0.0, 2),
        ("simmim", 5.0, 2),
    ]
    cfg = apply_overrides(RunConfig(), {"model.backbone": "mixmim_tiny_32"})
    per_s, source = measured_images_per_s(cfg, tmp_path)
    assert per_s == rows[0]["images_per_s"] and str(files[0]) in source  # the default path's row

    assert main(["bench", "--methods", "mixmim", "--attention", "official", *TINY, "--output", str(tmp_path)]) == 0
    assert len(list((tmp_path / "bench").glob("*.jsonl"))) == 2  # a new file, the first one untouched
    assert _rows(files[0]) == rows


def test_bench_measures_the_data_pipeline(tmp_path, capsys):
    folder = tmp_path / "data" / "train" / "a"
    folder.mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (40, 36), color=(i * 30, 10, 10)).save(folder / f"{i}.png")
    args = [
        "bench",
        "--methods",
        "mixmim",
        "--attention",
        "grouped",
        *TINY,
        "--data",
        str(tmp_path / "data"),
        "--workers",
        "0",
        "--data-batches",
        "2",
        "--data-batch-size",
        "2",
        "--output",
        str(tmp_path),
    ]
    assert main(args) == 0
    rows = _rows(next((tmp_path / "bench").glob("*.jsonl")))
    data = [r for r in rows if r["kind"] == "data"]
    assert [r["decode"] for r in data] == ["cpu", "gpu"]
    assert data[0]["images_per_s"] > 0 and data[0]["workers"] == 0
    assert data[1]["images_per_s"] is None and data[1]["note"]  # needs CUDA (or, with it: PNG files, not JPEG)
    assert "images_per_s_per_worker" in capsys.readouterr().out


def test_bench_rejects_unknown_choices(tmp_path, capsys):
    assert main(["bench", "--attention", "fast", *TINY, "--output", str(tmp_path)]) == 2
    assert "attention" in capsys.readouterr().err
    assert main(["bench", "--attention", "bound", *TINY, "--output", str(tmp_path)]) == 2
    assert "--bound" in capsys.readouterr().err


def test_bench_bound_row_gives_the_ceiling_and_never_feeds_the_budget(tmp_path, capsys):
    assert main(["bench", "--methods", "mixmim", "--bound", *TINY, "--output", str(tmp_path)]) == 0
    assert "bound: no attention" in capsys.readouterr().out
    path = next((tmp_path / "bench").glob("*.jsonl"))
    rows = _rows(path)
    assert [r["attention"] for r in rows] == ["grouped", "official", "bound"]
    bound = rows[-1]
    assert not bound["default_path"] and bound["x_official"] > 0 and rows[0]["keep_heap"]
    cfg = apply_overrides(RunConfig(), {"model.backbone": "mixmim_tiny_32"})
    assert measured_images_per_s(cfg, tmp_path)[0] == rows[0]["images_per_s"]


def test_budget_reads_the_newest_row_of_the_runs_device_and_refuses_cpu_rows_for_gpu_runs(tmp_path):
    def row(device, ips, default=True):
        return {
            "kind": "step",
            "method": "mixmim",
            "backbone": "mixmim_base",
            "device": device,
            "device_name": device.upper(),
            "images_per_s": ips,
            "default_path": default,
        }

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "20260101-000000-cuda.jsonl").write_text(json.dumps(row("cuda", 900.0)) + "\n")
    lines = [row("cpu", 2.0, default=False), row("cpu", 1.5), row("cuda", 50.0, default=False)]
    (tmp_path / "bench" / "20260102-000000-cpu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    cfg = apply_overrides(RunConfig(), {"model.backbone": "mixmim_base", "launch.gpus_per_node": 8})
    per_s, source = measured_images_per_s(cfg, tmp_path)
    assert per_s == 900.0 and "CUDA" in source
    cpu_run = apply_overrides(RunConfig(), {"model.backbone": "mixmim_base"})  # gpus_per_node=0: a CPU run
    assert measured_images_per_s(cpu_run, tmp_path)[0] == 1.5
    (tmp_path / "bench" / "20260101-000000-cuda.jsonl").unlink()
    with pytest.raises(BudgetError, match="only CPU rows") as err:  # never a CPU row for a GPU run's budget
        measured_images_per_s(cfg, tmp_path)
    assert "mixmim-bench bench --methods mixmim --backbone mixmim_base --device cuda" in str(err.value)
    assert measured_images_per_s(cpu_run, tmp_path)[0] == 1.5


def test_ratios_against_the_official_formulation_and_the_release():
    def row(method, attention, optimizer, ips):
        return {
            "kind": "step",
            "method": method,
            "attention": attention,
            "optimizer": optimizer,
            "images_per_s": ips,
            "ms_per_step": 1000 / ips,
            "default_path": attention == "grouped" and optimizer == "adamw-fused",
        }

    rows = add_ratios(
        [
            row("mixmim", "official", "adamw-default", 10.0),
            row("mixmim", "official", "adamw-fused", 12.0),
            row("mixmim", "grouped", "adamw-fused", 15.0),
            row("simmim", "grouped", "adamw-fused", 20.0),
        ],
        "simmim",
    )
    first = rows[0]
    assert (first["attention"], first["optimizer"]) == ("grouped", "adamw-fused")
    assert first["x_official"] == pytest.approx(1.25) and first["x_release"] == pytest.approx(1.5)
    assert first["cost_vs_ref"] == pytest.approx(20.0 / 15.0)
    assert rows[-1]["method"] == "simmim" and rows[-1]["x_official"] is None


def test_flops_of_a_beit_run_before_its_tokenizer_stage(tmp_path, capsys):
    """A BEiT run has no k-means codebook before its tokenizer stage: the FLOP count (cost, flops budgets) uses a
    zero codebook of the same shape and equals the count with a fitted one; the flops budget no longer fails."""
    from baselines import build_method
    from baselines.tokenizers.kmeans import KMeansTokenizer
    from baselines.tokenizers.stage import CODEBOOK_FILE, STAGE
    from experiments.budget import forward_flops_per_image
    from experiments.registry import get_experiment
    from mixmim.bench.flops import count_flops

    cfg = next(c for c in get_experiment("fixed-encoder", "debug").runs if c.method.name == "beit")
    flops = forward_flops_per_image(cfg)
    (tmp_path / STAGE).mkdir()
    codebook = torch.randn(cfg.method.vocab_size, 48, generator=torch.Generator().manual_seed(0))
    KMeansTokenizer(codebook, 4).save(tmp_path / STAGE / CODEBOOK_FILE)
    fitted = build_method(cfg, tmp_path).eval()
    size = fitted.encoder.img_size
    assert flops > 0 and flops == count_flops(fitted, torch.zeros(2, 3, size, size)) / 2
    assert (
        main(
            ["show", "fixed-encoder", "--variant", "debug", "--budget", "flops=1e15", "--output", str(tmp_path / "out")]
        )
        == 0
    )
    assert "beit-" in capsys.readouterr().out


def test_a_method_the_overrides_cannot_build_is_refused_before_anything_is_timed(tmp_path, capsys):
    """SimMIM's recipe (32 px mask unit) cannot mask a 32 px image: exit 2 with the fix, no store file."""
    unit = TINY.index("method.mask_unit=8")
    tiny = TINY[: unit - 1] + TINY[unit + 1 :]  # without "--set method.mask_unit=8"
    assert main(["bench", "--methods", "mixmim,simmim", *tiny, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "method 'simmim' cannot be built on backbone 'mixmim_tiny_32'" in err and "method.mask_unit" in err
    assert not list(tmp_path.rglob("*.jsonl"))


def test_bench_compile_puts_compiled_rows_beside_eager_ones_with_equal_losses(tmp_path, capsys, monkeypatch):
    """``--compile``: each variant eager then compiled, from the same weights and masks (equal losses). The
    benchmark's backend (inductor) is swapped for aot_eager here: the same wiring without code generation."""
    import mixmim.bench.step

    monkeypatch.setattr(mixmim.bench.step, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    try:
        args = ["bench", "--methods", "mixmim,simmim", "--attention", "grouped", "--compile", *TINY]
        assert main([*args, "--output", str(tmp_path)]) == 0
    finally:
        torch._dynamo.reset()
    assert "x eager" in capsys.readouterr().out
    rows = _rows(next((tmp_path / "bench").glob("*.jsonl")))
    assert [(r["method"], r["compiled"]) for r in rows] == [
        ("mixmim", False), ("mixmim", True), ("simmim", False), ("simmim", True)
    ]  # fmt: skip
    for eager, compiled in (rows[:2], rows[2:]):
        assert compiled["first_loss"] == pytest.approx(eager["first_loss"], abs=1e-5)
        assert compiled["x_eager"] == pytest.approx(compiled["images_per_s"] / eager["images_per_s"])
        assert eager["default_path"] and not compiled["default_path"] and eager["x_eager"] is None
    assert rows[3]["cost_vs_ref"] == 1.0 and rows[1]["cost_vs_ref"] == pytest.approx(
        rows[1]["ms_per_step"] / rows[3]["ms_per_step"])  # compiled against compiled



@pytest.mark.parametrize("flag", ["--steps", "--warmup", "--repeats", "--data-batches", "--data-batch-size"])
def test_counts_below_one_are_refused_by_argparse(flag, capsys):
    """``bench --warmup 0`` (and the other counts): argparse's usage error naming the minimum, no traceback;
    ``--help`` gives the minimum."""
    with pytest.raises(SystemExit) as stop:
        main(["bench", flag, "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {flag}: 0 is below the minimum, 1" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    entry = capsys.readouterr().out.split(f"\n  {flag} ")[1].split("\n  --")[0]  # the option's own help
    assert "at least 1" in " ".join(entry.split()), entry
