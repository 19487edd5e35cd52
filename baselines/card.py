"""What the suite knows about one pre-training method, declared once: its :class:`MethodCard`.

Every table keyed by method reads the cards (``baselines.registry.CARDS``): the builder registry and the
closed set of ``method.name``, the source recipes, the labels of tables and the loss kinds of the review page's
curves, the FLOP table of cost projections, the experiments' method grids and their run counts, and the test
sizes. Torch-free: a card holds data and a builder that imports its model only when called, so the cheap CLI
paths (``list``, ``show``, ``status``, ``report``) read the cards without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mixmim.backbones.interface import Backbone
    from mixmim.config import MethodConfig
    from mixmim.pretrain.method import PretrainMethod

MethodBuilder = Callable[["Backbone", "MethodConfig", "Path | None"], "PretrainMethod"]


@dataclass(frozen=True)
class FlopEntry:
    """Forward GFLOPs per image of a method on a backbone at 224 px (fvcore convention: multiply-adds), counted
    by ``python scripts/count_flops.py`` with the method's source recipe and then ``overrides``."""

    gflops: float
    overrides: tuple[str, ...] = ()  # key=value overrides the count was made with (MixMIM on a ViT: 32-px cells)


@dataclass(frozen=True)
class MethodCard:
    """One pre-training method, as every layer above ``mixmim/`` sees it.

    Attributes:
        name: the value of ``method.name`` (and the first part of its runs' names).
        label: its name in tables (``MAE``).
        order: its place in tables and in experiments' method grids (MixMIM 0, MAE 1, SimMIM 2, BEiT 3); ties
            are broken by name.
        loss: what its pre-training loss is (``pixel MSE``): the review page draws the curves of one loss kind
            on one axis (``reports.curves``).
        fields: the ``MethodConfig`` fields it reads; ``build_method`` logs the changed ones it ignores. A method
            that reads ``tokenizer`` gets the offline ``tokenizer`` stage before pre-training (k-means).
        build: ``(encoder, method config, run folder or None) -> PretrainMethod``; imports the model when called.
        recipe: the source paper's / official repository's pre-training recipe as dotted ``RunConfig`` overrides,
            each value commented with its source in the card's module (epochs are left to the experiment).
        family_recipe: backbone family (``vit``, ``hierarchical``) -> the values where the official recipe
            differs by family (SimMIM's Swin drop path).
        finetune: the method's own fine-tuning recipe as dotted ``finetune.*`` (and ``linprobe.*``, head
            ``model.*``) overrides, each value commented with its source (the ``own`` fine-tuning protocol): what
            it sets beyond the settings every official script shares (``baselines.registry._FINETUNE_COMMON``);
            ``baselines.registry.method_finetune_defaults`` merges them.
        finetune_family: backbone family -> the fine-tuning values where the official recipe differs by family
            (SimMIM's Swin layer rule; the plain-ViT head switches off on the hierarchical backbone).
        flops: backbone -> :class:`FlopEntry` of its pre-training forward (``experiments.cost.PRETRAIN_GFLOPS``).
        test_settings: dotted overrides that shrink the source recipe to the unit tests' 32-px backbones
            (small decoders, a small vocabulary, 8-px cells).
    """

    name: str
    label: str
    order: int
    loss: str
    fields: frozenset[str]
    build: MethodBuilder
    recipe: Mapping[str, Any]
    family_recipe: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    finetune: Mapping[str, Any] = field(default_factory=dict)
    finetune_family: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    flops: Mapping[str, FlopEntry] = field(default_factory=dict)
    test_settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_tokenizer(self) -> bool:
        """Whether the method predicts visual tokens (reads ``method.tokenizer``): with the offline k-means
        tokenizer its runs fit it first (``tokenizer`` stage), and shape-only builds get a random codebook."""
        return "tokenizer" in self.fields
