"""timm's own model tests (``tests/test_models.py`` of the installed timm's sdist) on every backbone we register.

The test file comes from the timm sdist, fetched from the package registry once per timm version (``pip
download``) and kept in a cache outside the repository (:func:`sdist_cache_dir`). It runs in a subprocess with
``timm_models_conftest.py`` as its conftest (only our models; see that file). TorchScript and FX tests are
excluded: TorchScript is deprecated in current torch, and FX tracing is not part of the contract we claim
(docs/architecture.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import timm

import mixmim.backbones as backbones

HERE = Path(__file__).parent
REPO = HERE.parent.parent
# Every model must have these collected (passed, or skipped by timm's own size limits or our parameter cap).
REQUIRED = {
    "forward": ("test_model_forward",),
    "backward": ("test_model_backward",),
    "cfg": ("test_model_default_cfgs",),
    "features": ("test_model_forward_features", "test_model_forward_intermediates_features",
                 "test_model_forward_intermediates"),
}
OFFLINE_SIGNS = ("Network is unreachable", "Failed to establish a new connection", "Temporary failure in name",
                 "Max retries exceeded", "Read timed out", "ProxyError", "Name or service not known")
PYTEST_INI = """[pytest]
markers =
    base
    forward
    backward
    cfg
    cfg_nonstd
    torchscript
    features
    fxforward
    fxbackward
    timeout
"""


def sdist_cache_dir(version: str) -> Path:
    """Where the timm sdist of ``version`` is kept between runs: ``$MIXMIM_TEST_CACHE`` (default
    ``~/.cache/mixmim-bench``) ``/timm-sdist/<version>``, outside the repository."""
    root = Path(os.environ.get("MIXMIM_TEST_CACHE", Path.home() / ".cache" / "mixmim-bench"))
    return root / "timm-sdist" / version


def timm_sdist(version: str) -> Path:
    """The timm sdist of ``version``: from the cache, else ``pip download`` into it (once per version); skips
    the test when the package registry cannot be reached (any other pip failure fails it)."""
    cache = sdist_cache_dir(version)
    cached = sorted(cache.glob(f"timm-{version}.tar.gz"))
    if cached:
        return cached[0]
    download = cache.parent / f".{version}.{os.getpid()}.tmp"  # a whole file or none: renamed into place
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
           "-d", str(download), f"timm=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        shutil.rmtree(download, ignore_errors=True)
        if any(sign in proc.stdout + proc.stderr for sign in OFFLINE_SIGNS):
            pytest.skip(f"package registry unreachable: cannot fetch the timm {version} sdist for its model tests")
        raise AssertionError(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    (sdist,) = download.glob("timm-*.tar.gz")
    cache.mkdir(parents=True, exist_ok=True)
    os.replace(sdist, cache / sdist.name)
    shutil.rmtree(download, ignore_errors=True)
    return cache / sdist.name


def fetch_timm_test_file(dest: Path) -> Path:
    """``tests/test_models.py`` from the timm sdist of the installed version (:func:`timm_sdist`), into ``dest``."""
    version = timm.__version__
    sdist = timm_sdist(version)
    member = f"timm-{version}/tests/test_models.py"
    with tarfile.open(sdist) as tar:
        source = tar.extractfile(member)
        if source is None:
            raise AssertionError(f"{member} is not in {sdist.name}")
        target = dest / "suite" / "test_models.py"
        target.parent.mkdir()
        target.write_bytes(source.read())
    return target


def summarize(results: dict[str, str]) -> dict[str, dict[str, str]]:
    """nodeid -> outcome, as {model: {test function: outcome}}."""
    out: dict[str, dict[str, str]] = {}
    for nodeid, outcome in results.items():
        func, _, params = nodeid.split("::")[-1].partition("[")  # test_x[1-mixmim_base] or test_x[mixmim_base]
        model = params.rstrip("]").split("-")[-1]  # the model id comes last (parametrize order)
        if model in backbones.BACKBONES:
            out.setdefault(model, {})[func] = outcome
    return out


@pytest.mark.slow
def test_the_sdist_comes_from_the_cache_without_pip(tmp_path, monkeypatch):
    """A cached sdist is used as it is: pip runs once per timm version, not on every test run."""
    monkeypatch.setenv("MIXMIM_TEST_CACHE", str(tmp_path))
    cached = sdist_cache_dir("9.9.9") / "timm-9.9.9.tar.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"sdist")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip ran although the sdist is cached"))
    assert timm_sdist("9.9.9") == cached


def test_timm_model_tests_pass_on_every_registered_backbone(tmp_path):
    test_file = fetch_timm_test_file(tmp_path)
    suite = test_file.parent
    shutil.copy(HERE / "timm_models_conftest.py", suite / "conftest.py")
    (suite / "pytest.ini").write_text(PYTEST_INI)
    report = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "MIXMIM_TIMM_REPORT": str(report), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("GITHUB_ACTIONS", None)  # timm's test file changes its exclusion lists on GitHub's runners
    cmd = [sys.executable, "-m", "pytest", "test_models.py", "-q", "-p", "no:cacheprovider",
           "-W", "ignore::DeprecationWarning", "--rootdir", str(suite)]
    proc = subprocess.run(cmd, cwd=suite, env=env, capture_output=True, text=True, timeout=1800)
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else tail)  # timm's summary line
    assert proc.returncode == 0, tail
    by_model = summarize(json.loads(report.read_text()))
    failed = {m: [f for f, o in tests.items() if o == "failed"] for m, tests in by_model.items()}
    assert not any(failed.values()), failed
    for model in backbones.BACKBONES:
        collected = by_model.get(model, {})
        for kind, funcs in REQUIRED.items():
            missing = [f for f in funcs if f not in collected]
            assert not missing, f"{model}: timm's {kind} tests {missing} were not collected"
    # the models under the parameter cap and timm's size limits must really run every required test
    for model in ("mixmim_tiny_32", "mixmim_small_64", "mixmim_vit_tiny_patch4_32", "mixmim_base"):
        ran = {f for f, o in by_model[model].items() if o == "passed"}
        assert {f for funcs in REQUIRED.values() for f in funcs} <= ran, (model, by_model[model])
