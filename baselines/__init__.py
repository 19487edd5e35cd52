"""MAE, BEiT and SimMIM on the shared backbones, and the registry of every pre-training method.

``METHODS`` maps a name (``mixmim``, ``mae``, ``simmim``, ``beit``) to its builder, ``build_method(cfg)``
builds the encoder and the method of a run, ``method_defaults(name)`` gives the source recipe as
``key=value`` overrides. Methods use only the backbones' public interface (``docs/methods.md``).
``*_from_official_args`` build each method from its official constructor's argument names
(``baselines/official.py``).
"""

from baselines.official import beit_from_official_args, mae_from_official_args, simmim_from_official_args
from baselines.registry import METHODS, build_method, method_defaults

__all__ = ["METHODS", "beit_from_official_args", "build_method", "mae_from_official_args", "method_defaults",
           "simmim_from_official_args"]
