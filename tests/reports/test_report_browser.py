"""The review page in a real browser: headless Chromium (Debian's ``chromium``) opens it offline.

Pages: a smoke-like experiment (five methods, the random-init control without pre-training, a failed stage
with its log, losses of three kinds), a many-run experiment (120 runs: the grouped and paged layout), and,
when ``MIXMIM_SMOKE_PAGE`` names it (CI sets it after ``mixmim-bench run smoke``), the smoke's own page.
Each must load with no console error, no request but the page itself, every table and plot present and
drawn, no page-wide horizontal scrolling at a phone's width; screenshots at desktop and narrow widths are
saved under the test's tmp dir and copied to ``/tmp/mixmim-report-screens/`` for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from cdp_browser import chromium, find_chromium
from synthetic_runs import stage_result, synthetic_experiment, write_run

from baselines.registry import pretrain_losses
from experiments.definitions.smoke import smoke_table
from reports.page import PageContext
from reports.report import report_experiment
from reports.spec import Column, TableSpec

SCREENS = Path("/tmp/mixmim-report-screens")
WIDTHS = {"desktop": (1280, 900), "narrow": (390, 844)}
SMOKE_PAGE_LIMIT = 1 << 20  # the smoke's page stays under 1 MB
LOSS_START = {"mixmim": 0.9, "mae": 0.8, "simmim": 0.6, "beit": 3.1}


@pytest.fixture(scope="module")
def browser_exe() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium on PATH: install Debian's `chromium` (apt-get install -y chromium), or set "
                    "MIXMIM_CHROMIUM to a Chromium executable")
    return exe


def _smoke_like(exp_dir: Path) -> Path:
    """Five runs shaped like ``smoke``'s: four methods and the random-init control (no pre-training planned);
    SimMIM's fine-tune failed and left a log."""
    for method, start in [*LOSS_START.items(), ("random", None)]:
        results = {"linprobe": stage_result({"top1": 80.0}, 10, 128, 0.1),
                   "knn": stage_result({"top1": 78.0}, 0, 128, 0.0),
                   "finetune": stage_result({"top1": 85.0}, 4, 32, 3e-3)}
        if start is not None:
            results = {"pretrain": stage_result({"loss": start / 2}, 12, 64, 1.5e-3), **results}
        if method == "simmim":
            results["finetune"] = {"status": "failed", "error": "RuntimeError: loss is NaN"}
        curves = {"finetune": [2.3 - 0.1 * k for k in range(10)]}
        if start is not None:
            curves["pretrain"] = [start * 0.97**k for k in range(40)]
        write_run(exp_dir, f"{method}-mixmim_tiny_32-s0", method=method, backbone="mixmim_tiny_32", seed=0,
                  results=results, curves=curves)
    log = exp_dir / "_logs" / "simmim-mixmim_tiny_32-s0" / "finetune.log"
    log.parent.mkdir(parents=True)
    log.write_text("step 10 loss 1.2\nTraceback (most recent call last):\nRuntimeError: loss is NaN\n")
    return exp_dir


MANY_SPECS = (
    TableSpec(name="main", title="By method", rows=("method",), budget=True,
              columns=(Column("finetune", "top1", "Fine-tune", reference="{method}_b_600ep_top1"),
                       Column("linprobe", "top1", "Linear probe"))),
    TableSpec(name="ratio", title="By method and mask ratio", rows=("method", "setting.mask_ratio"),
              columns=(Column("finetune", "top1", "Fine-tune"),)),
)


def _pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    """name -> (page, number of result tables it must show)."""
    root = tmp_path_factory.mktemp("pages")
    smoke = report_experiment(_smoke_like(root / "smoke"), [smoke_table()], root / "out-smoke", command="test",
                              context=PageContext(pretrain_losses=pretrain_losses()))  # the cards' loss kinds
    many_dir = root / "many"
    synthetic_experiment(many_dir, 120)
    many = report_experiment(many_dir, MANY_SPECS, root / "out-many", command="test")
    pages = {"smoke-like": (smoke.page, 1), "many-runs": (many.page, len(MANY_SPECS))}
    if os.environ.get("MIXMIM_SMOKE_PAGE"):
        pages["smoke"] = (Path(os.environ["MIXMIM_SMOKE_PAGE"]), 1)
    return pages


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int]]:
    return _pages(tmp_path_factory)


PROBE = """(() => {
  const svgs = [...document.querySelectorAll('svg')];
  const imgs = [...document.images];
  return {
    tables: document.querySelectorAll('table').length,
    result_tables: document.querySelectorAll('#tables section table').length,
    svgs: svgs.length,
    blank_svgs: svgs.filter(s => s.getBoundingClientRect().width < 50 || !s.querySelector('path')).length,
    broken_imgs: imgs.filter(i => !i.complete || i.naturalWidth === 0).length,
    sections: [...document.querySelectorAll('main > section[id]')].map(s => s.id),
    nav_targets_missing: [...document.querySelectorAll('nav a')].filter(
        a => !document.querySelector(a.getAttribute('href'))).length,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    scripts: document.scripts.length,
  };
})()"""


def test_pages_open_offline_with_every_table_and_plot(browser_exe: str, pages, tmp_path: Path) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    with chromium(browser_exe, tmp_path / "profile") as tab:
        for name, (page, n_tables) in pages.items():
            assert page.is_file(), f"{name}: no page at {page}"
            source = page.read_text(encoding="utf-8")
            for view, (width, height) in WIDTHS.items():
                visit = tab.load(page.resolve().as_uri(), width, height)
                assert visit.console_errors == [], (name, view, visit.console_errors)
                assert visit.failed_requests == [], (name, view, visit.failed_requests)
                assert visit.requests == [page.resolve().as_uri()], (name, view, visit.requests)  # nothing fetched
                probe = tab.evaluate(PROBE)
                assert probe["tables"] == source.count("<table") and probe["result_tables"] >= n_tables, probe
                assert probe["svgs"] == source.count("<svg") >= 1 and probe["blank_svgs"] == 0, probe
                assert probe["broken_imgs"] == 0 and probe["scripts"] == 0, probe
                assert probe["sections"] == ["tables", "curves", "plots", "cost", "deviations", "runs", "files"]
                assert probe["nav_targets_missing"] == 0, probe
                assert probe["overflow"] <= 1, (name, view, probe)  # wide tables scroll in their own box
                shot = tab.screenshot(tmp_path / f"{name}-{view}.png")
                assert shot.stat().st_size > 10_000, shot
                shutil.copy2(shot, SCREENS / shot.name)
            print(f"{name}: {page} ({page.stat().st_size / 1024:.0f} KiB), {probe['tables']} tables, "
                  f"{probe['svgs']} plots; screenshots {SCREENS}/{name}-desktop.png, -narrow.png")


def test_smoke_like_page_is_small_and_explains_itself(pages) -> None:
    page, _ = pages["smoke-like"]
    html = page.read_text(encoding="utf-8")
    assert page.stat().st_size < SMOKE_PAGE_LIMIT
    assert "<script" not in html and not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", html)
    assert html.count('id="curve-pretrain-') == 3  # pixel MSE, pixel L1, token cross-entropy: three panels
    assert "RuntimeError: loss is NaN" in html  # the failed stage's log tail
    assert "4 complete, 1 with missing" in html  # random init's unplanned pre-training is not missing
    readme = (page.parent / "README.md").read_text(encoding="utf-8")
    assert "Runs: 5 (4 complete, 1 with missing or failed stages)" in readme
