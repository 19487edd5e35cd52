"""Which stages a preflight runs: the distinct stage shapes of an experiment's runs, grouped into chains.

A *stage shape* is (stage, method, backbone, resolution; for ``coco`` also the detection size): the runs that
share one build the same model, optimizer and transforms at the same shapes, so one check covers them all (the
report lists which). A *chain* is the stages that hand weights to each other, as in a run: BEiT's tokenizer,
then pre-training, then the evaluations that start from its encoder (``init=pretrain``). Runs without a
pre-training stage (``init`` a path or ``random``) form chains of their own. Torch-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mixmim.config import STAGE_NAMES, RunConfig

ShapeKey = tuple[str, str, str, int, int]  # (stage, method, backbone, img_size (0: default), coco img_size or 0)


@dataclass
class StageShape:
    """One stage shape: ``cfg`` is the first covered run's config; ``runs`` every run it covers."""

    stage: str
    cfg: RunConfig
    runs: list[str] = field(default_factory=list)

    @property
    def key(self) -> ShapeKey:
        return shape_key(self.cfg, self.stage)

    @property
    def label(self) -> str:
        """``stage method backbone@size`` (``coco@1024`` for the detection size)."""
        _, method, backbone, size, coco = self.key
        where = f"{backbone}@{size or 'default'}"
        return f"{self.stage} {method} {where}" + (f" coco@{coco}" if coco else "")


@dataclass
class Chain:
    """Stage shapes that hand weights to each other, in stage order; ``name`` is a folder-safe id."""

    name: str
    shapes: list[StageShape] = field(default_factory=list)


def shape_key(cfg: RunConfig, stage: str) -> ShapeKey:
    """The stage shape of ``stage`` in run ``cfg``."""
    coco = cfg.coco.img_size if stage == "coco" else 0
    return (stage, cfg.method.name, cfg.model.backbone, cfg.model.img_size, coco)


def chain_name(cfg: RunConfig) -> str:
    """The chain of ``cfg``: its method, backbone and size, and where its evaluations' weights come from."""
    source = "pretrain" if "pretrain" in cfg.stages else "init-" + ("random" if cfg.init == "random" else "path")
    text = f"{cfg.method.name}-{cfg.model.backbone}-{cfg.model.img_size or 'default'}-{source}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def plan_chains(runs: list[RunConfig]) -> list[Chain]:
    """The chains of ``runs`` with their distinct stage shapes (each shape once, listing the runs it covers)."""
    chains: dict[str, Chain] = {}
    shapes: dict[tuple[str, ShapeKey], StageShape] = {}
    for cfg in runs:
        chain = chains.setdefault(chain_name(cfg), Chain(chain_name(cfg)))
        for stage in cfg.stages:
            key = (chain.name, shape_key(cfg, stage))
            if key not in shapes:
                shapes[key] = StageShape(stage, cfg)
                chain.shapes.append(shapes[key])
            shapes[key].runs.append(cfg.name)
    for chain in chains.values():
        chain.shapes.sort(key=lambda s: STAGE_NAMES.index(s.stage))
    return list(chains.values())
