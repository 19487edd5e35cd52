"""MAE, BEiT and SimMIM on the shared backbones, and the registry of every pre-training method.

``CARDS`` maps a name (``mixmim``, ``mae``, ``simmim``, ``beit``) to its card (``baselines/cards/<name>.py``: label,
recipe, fields, FLOPs, builder), ``METHODS`` to its builder, ``build_method(cfg)``
builds the encoder and the method of a run, ``method_defaults(name)`` gives the source recipe as
``key=value`` overrides. Methods use only the backbones' public interface (``docs/methods.md``).
``*_from_official_args`` build each method from its official constructor's argument names
(``baselines/official.py``). The names load with their module on first use (``lazy_loader``), so
``method_defaults`` (what the cheap CLI paths read) costs no torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "official": ["beit_from_official_args", "mae_from_official_args", "simmim_from_official_args"],
    "registry": ["CARDS", "METHODS", "build_method", "method_card", "method_defaults", "method_finetune_defaults",
                 "method_labels", "pretrain_losses"],
})
