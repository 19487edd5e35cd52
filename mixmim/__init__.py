"""mixmim: the core library of mixmim-bench (backbones, masking, MixMIM, data, engine, evaluations).

Importing it registers the backbones in timm's registry (``timm.create_model("mixmim_base")``).
"""

from mixmim import backbones  # noqa: F401  (registers the timm entry points)

__version__ = "0.1.0"
