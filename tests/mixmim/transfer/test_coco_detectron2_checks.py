"""The checks before a detectron2 stage runs (``check_detectron2``; ``run``, ``--dry-run`` and the stage call
them), on simulated installations: detectron2 missing, a fake package built with or without CUDA ops, a
broken import, a source checkout on the path; and docs/coco.md's install commands (they parse, they pin the
commit the checks name). Nothing here needs detectron2."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from mixmim.transfer import detectron2 as d2_engine
from mixmim.transfer.detectron2 import (
    DETECTRON2_COMMIT,
    ENGINE_MODULES,
    ENGINE_PACKAGES,
    PIN_COMMAND,
    check_detectron2,
)

DOC = Path(__file__).parents[3] / "docs" / "coco.md"
FAKE_OPS = {"cpu": "def has_cuda():\n    return False\n\ndef get_cuda_version():\n    return 'not available'\n",
            "cuda": "def has_cuda():\n    return True\n\ndef get_cuda_version():\n    return 'CUDA 13.0'\n",
            "old-cpu": "def get_cuda_version():\n    return 'not available'\n"}  # a build from before has_cuda()


@pytest.fixture
def fake_install(tmp_path, monkeypatch):
    """``make(ops, files={})``: a fake detectron2 on ``sys.path`` whose ``_C`` is ``FAKE_OPS[ops]`` (None: no
    ``_C``), with every module of ``ENGINE_MODULES`` (``files`` replaces some: relative path -> source) and an
    empty stand-in for each package of ``ENGINE_PACKAGES`` this environment lacks. Modules imported from it are
    removed afterwards, and a real detectron2 is hidden meanwhile."""
    for name in [n for n in sys.modules if n.split(".")[0] == "detectron2"]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    tops = set(ENGINE_PACKAGES)

    def make(ops: str | None, files: dict[str, str] | None = None) -> Path:
        root = tmp_path / "site"
        for module in ("detectron2", *ENGINE_MODULES):
            package = root.joinpath(*module.split("."))
            package.mkdir(parents=True, exist_ok=True)
            (package / "__init__.py").touch()
        for top in tops - {"detectron2"}:
            if importlib.util.find_spec(top) is None:
                (root / top).mkdir(exist_ok=True)
                (root / top / "__init__.py").touch()
        if ops:
            (root / "detectron2" / "_C.py").write_text(FAKE_OPS[ops])
        for relative, source in (files or {}).items():
            (root / relative).write_text(source)
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        return root

    yield make
    fake = str(tmp_path / "site")
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "detectron2" or str(getattr(module, "__file__", "") or "").startswith(fake):
            del sys.modules[name]


def test_missing_detectron2_is_one_message_with_the_pinned_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "detectron2", None)  # find_spec: None, as when it is not installed
    problems = check_detectron2(cuda=False)
    assert len(problems) == 1
    assert f"detectron2.git@{DETECTRON2_COMMIT}'" in problems[0] and "MAX_JOBS=2" in problems[0]
    assert "setuptools<81" in problems[0] and "coco.engine=torchvision" in problems[0]


@pytest.mark.parametrize("ops", ["cpu", "old-cpu"])
def test_a_build_without_cuda_ops_is_refused_only_where_the_stage_trains_on_cuda(fake_install, ops):
    root = fake_install(ops)
    assert check_detectron2(cuda=False) == []
    problems = check_detectron2(cuda=True)
    assert len(problems) == 1 and "built without CUDA ops" in problems[0] and str(root / "detectron2") in problems[0]
    assert "'not available'" in problems[0] and "FORCE_CUDA=1" in problems[0] and DETECTRON2_COMMIT in problems[0]


def test_a_cuda_build_passes(fake_install):
    fake_install("cuda")
    assert check_detectron2(cuda=True) == [] and check_detectron2(cuda=False) == []


def test_no_compiled_ops_is_refused(fake_install):
    fake_install(None)
    problems = check_detectron2(cuda=False)
    assert len(problems) == 1 and "no usable compiled ops" in problems[0]
    assert "pip uninstall -y detectron2" in problems[0]


def test_a_source_checkout_on_the_path_is_named(fake_install):
    root = fake_install(None, {"setup.py": ""})
    problems = check_detectron2(cuda=False)
    assert len(problems) == 1 and f"finds the source folder {root / 'detectron2'}" in problems[0]
    assert "run from another directory" in problems[0]


def test_setuptools_without_pkg_resources_is_named(fake_install, monkeypatch):
    fake_install("cuda", {"detectron2/model_zoo/__init__.py": "import pkg_resources\n"})
    monkeypatch.setitem(sys.modules, "pkg_resources", None)  # as with setuptools >= 81
    problems = check_detectron2(cuda=True)
    assert len(problems) == 1 and "`import detectron2.model_zoo` fails" in problems[0]
    assert "pip install 'setuptools<81'" in problems[0]


def test_a_build_for_another_torch_is_refused_with_the_rebuild(fake_install):
    fake_install("cuda", {"detectron2/modeling/__init__.py": "raise ImportError('_C.so: undefined symbol: _ZN3c10')\n"})
    problems = check_detectron2(cuda=True)
    assert len(problems) == 1 and "undefined symbol" in problems[0]
    assert "rebuild it against the installed torch: pip uninstall -y detectron2" in problems[0]


def test_missing_engine_package_is_named_with_pip(fake_install, monkeypatch):
    fake_install("cuda")
    monkeypatch.setitem(sys.modules, "shapely", None)
    assert check_detectron2(cuda=True) == ["coco.engine=detectron2 needs shapely, not installed: pip install shapely"]


SLURM_GPUS = ["launch.executor=slurm", "launch.gpus_per_node=8", "coco.batch_size=8"]


@pytest.mark.parametrize("sets,expected", [([], "needs detectron2, which is not on PyPI"), (SLURM_GPUS, None)])
def test_dry_run_refuses_before_anything_launches(sets, expected, fake_install, monkeypatch, tmp_path, capsys):
    """``run --dry-run`` (and so ``run``, which validates the same way before pre-training) checks the engine:
    here without detectron2, and with a CPU-only build for a Slurm run on GPUs (a login node without a GPU)."""
    if expected:
        monkeypatch.setitem(sys.modules, "detectron2", None)
    else:
        fake_install("cpu")
        expected = "built without CUDA ops"
    overrides = [arg for s in ["coco.engine=detectron2", *sets] for arg in ("--set", s)]
    code = main(["run", "coco", "--variant", "debug", "--dry-run", "--output", str(tmp_path / "out"), *overrides])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "(coco.engine=detectron2)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_stage_check_uses_this_machines_cuda(monkeypatch):
    seen = []
    monkeypatch.setattr(d2_engine, "check_detectron2", lambda cuda: seen.append(cuda) or ["broken"])
    with pytest.raises(ImportError, match="^broken$"):
        d2_engine.require_detectron2()
    import torch

    assert seen == [torch.cuda.is_available()]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_the_docs_install_commands_parse_and_pin_the_checked_commit():
    text = DOC.read_text()
    blocks = _bash_blocks(text)
    assert len(blocks) >= 3
    for block in blocks:
        subprocess.run(["bash", "-n"], input=block, text=True, check=True)
    commands = "\n".join(blocks)
    assert set(re.findall(r"detectron2\.git@([0-9a-f]+)", text)) == {DETECTRON2_COMMIT}
    assert f"checkout {DETECTRON2_COMMIT}" in commands  # the offline path builds the same commit
    build = commands.index(PIN_COMMAND)  # the command the checks' messages give
    assert commands.index("pip install -e") < commands.index("'setuptools<81'") < build  # in the order they run
    assert commands.index("export MAX_JOBS=") < build
