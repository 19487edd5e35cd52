"""MAE, BEiT and SimMIM on the shared backbones, and the registry of every pre-training method.

``METHODS`` maps a name (``mixmim``, ``mae``, ``simmim``, ``beit``) to its builder, ``build_method(cfg)``
builds the encoder and the method of a run, ``method_defaults(name)`` gives the source recipe as
``key=value`` overrides. Methods use only the backbones' public interface (``docs/methods.md``).
"""

from baselines.registry import METHODS, build_method, method_defaults

__all__ = ["METHODS", "build_method", "method_defaults"]
