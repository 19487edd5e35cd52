"""conftest.py for timm's own ``tests/test_models.py``, run on the suite's backbones only.

``tests/mixmim/test_timm_models.py`` copies this file as ``conftest.py`` beside timm's test file (taken from
the timm sdist of the installed version) and runs pytest there. It:

- imports ``mixmim`` before timm's test module is collected, so ``timm.list_models()`` (which parametrizes
  timm's tests at import) lists our models;
- lets our module join timm's ``FEAT_INTER_FILTERS``: timm selects the models that implement
  ``forward_intermediates`` by module name, from a list of its own modules that no other package can be in.
  ``list_models(module=[...])`` also matches our module, so those tests collect our models;
- keeps only the items parametrized with one of our models (timm's own models and model-less tests are
  deselected), without the TorchScript and FX tests (``*torchscript*``, ``*_fx*``: TorchScript is deprecated
  in current torch; FX tracing is not part of the contract we claim);
- skips the tests that allocate full weights on CPU (forward, backward, feature extraction, pruning) for
  models above ``MAX_PARAMS``, and timm's pruning contract (about 40 passes at 224 px; timm's own CI leaves
  it out) above ``MAX_PARAMS_PRUNE``; the config tests, on the meta device, run for every model;
- writes every kept item's outcome to ``$MIXMIM_TIMM_REPORT`` (JSON) for the calling test.
"""

import json
import os

import pytest
import timm
import torch

import mixmim.backbones as backbones

OURS = set(backbones.BACKBONES)
OUR_MODULES = {fn.__module__.split(".")[-1] for fn in backbones.BACKBONES.values()}  # timm's module key
MAX_PARAMS = 100_000_000  # above: the tests that allocate full weights on CPU skip (CI time and memory)
MAX_PARAMS_PRUNE = 10_000_000  # the pruning contract: ~150 s for a B-size model on 2 CPU cores; small ones run
HEAVY_TESTS = {  # timm's tests that build the model with real weights and run it on CPU: parameter cap
    "test_model_forward": MAX_PARAMS, "test_model_backward": MAX_PARAMS, "test_model_forward_features": MAX_PARAMS,
    "test_model_forward_intermediates_features": MAX_PARAMS, "test_model_forward_intermediates": MAX_PARAMS,
    "test_prune_intermediate_layers_contract": MAX_PARAMS_PRUNE,
}

_list_models = timm.list_models


def _list_models_with_ours(*args, **kwargs):
    module = kwargs.get("module")
    if isinstance(module, (list, tuple)):
        kwargs["module"] = [*module, *sorted(OUR_MODULES)]
    return _list_models(*args, **kwargs)


timm.list_models = _list_models_with_ours  # before timm's test module does ``from timm import list_models``


def _num_params(name: str) -> int:
    with torch.device("meta"):
        model = backbones.create_backbone(name)
    return sum(p.numel() for p in model.parameters())


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        excluded = "torchscript" in item.originalname or "_fx" in item.originalname
        (kept if params.get("model_name") in OURS and not excluded else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
    sizes = {name: _num_params(name) for name in OURS}
    for item in kept:
        cap = HEAVY_TESTS.get(item.originalname)
        if cap is not None and sizes[item.callspec.params["model_name"]] > cap:
            item.add_marker(pytest.mark.skip(reason=f"over {cap:,} parameters: full weights on CPU"))


_RESULTS = {}


def pytest_runtest_logreport(report):
    # the call's outcome; setup/teardown count only when they fail or skip (then there may be no call)
    if report.when == "call" or (report.outcome != "passed" and report.nodeid not in _RESULTS):
        _RESULTS[report.nodeid] = report.outcome


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("MIXMIM_TIMM_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(_RESULTS, f, indent=1, sort_keys=True)
