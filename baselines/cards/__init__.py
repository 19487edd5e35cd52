"""The method cards: one module per pre-training method, each defining ``CARD`` (``baselines.card.MethodCard``).

A method is registered by adding its module here; :func:`discover` finds every module of a package
(``pkgutil``), so no list of names is kept by hand. Card modules are torch-free: a card's builder imports its
model when it is called.
"""

from __future__ import annotations

import importlib
import pkgutil

from baselines.card import MethodCard


def discover(package: str = __name__) -> dict[str, MethodCard]:
    """name -> card of every module of ``package`` that defines ``CARD``, in card order (``order``, then name).

    Raises:
        ValueError: two cards share a name, or a card's name is not its module's.
    """
    cards: dict[str, MethodCard] = {}
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        card = getattr(importlib.import_module(f"{package}.{info.name}"), "CARD", None)
        if card is None:
            continue
        if card.name != info.name or card.name in cards:
            raise ValueError(f"the card of {package}.{info.name} is named '{card.name}': a card is named as its "
                             f"module, once (registered: {', '.join(cards)})")
        cards[card.name] = card
    return dict(sorted(cards.items(), key=lambda item: (item[1].order, item[0])))
