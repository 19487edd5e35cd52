"""The DALL-E dVAE encoder (openai/DALL-E ``dall_e/encoder.py``), BEiT's standard tokenizer, from a local file.

Architecture (written from the official one's facts; its state-dict layout is the official
``encoder.pkl``'s): a 7x7 input conv to ``n_hid`` (256) channels; four groups of ``n_blk_per_group`` (2)
residual blocks of widths 1, 2, 4, 8 x ``n_hid``, with 2x2 max-pooling after groups 1-3 (so 8x
downsampling); a ReLU and a 1x1 conv to the ``vocab_size`` (8192) logits. A block is
``id_path(x) + post_gain * res_path(x)`` with ``post_gain = 1 / n_layers**2`` (``n_layers`` = 8 blocks),
``res_path`` = ReLU, 3x3 conv to ``n_out / 4``, ReLU, 3x3, ReLU, 3x3, ReLU, 1x1 conv to ``n_out``, and
``id_path`` a 1x1 conv when the width changes. Convolutions hold parameters named ``w`` and ``b``.

The weights cannot be downloaded at run time: users fetch https://cdn.openai.com/dall-e/encoder.pkl once
and pass its path (``method.tokenizer_path``). The official file is a pickled ``dall_e.encoder.Encoder``
module; it is read without the ``dall_e`` package and without running pickled code (the official classes
are mapped to an inert stand-in, torch's ``weights_only`` unpickler does the rest). A plain state dict
with the same keys (``torch.save(encoder.state_dict(), path)``) is accepted too.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from baselines.tokenizers.interface import Tokenizer, denormalize

DALLE_ENCODER_URL = "https://cdn.openai.com/dall-e/encoder.pkl"
LOGIT_LAPLACE_EPS = 0.1  # dall_e.utils.map_pixels: x -> (1 - 2 eps) x + eps
DOWNSAMPLE = 8  # three 2x2 max-pools
GROUP_WIDTHS = (1, 2, 4, 8)  # x n_hid

WHERE_TO_GET = (f"Download the official DALL-E encoder once from {DALLE_ENCODER_URL} (openai/DALL-E; the "
                "tokenizer of BEiT) and pass its local path as method.tokenizer_path.")
EXPECTED = ("Expected the DALL-E dVAE encoder (openai/DALL-E encoder.pkl, or a state dict saved from it): keys "
            "blocks.input.{w,b}, blocks.group_{1-4}.block_{j}.res_path.conv_{1-4}.{w,b} (+ id_path.{w,b} where "
            "the width changes) and blocks.output.conv.{w,b}; official shapes blocks.input.w [256, 3, 7, 7] and "
            "blocks.output.conv.w [8192, 2048, 1, 1].")


class DalleConv2d(nn.Module):
    """'Same'-padded convolution with the official parameter names: ``w`` [out, in, k, k], ``b`` [out]."""

    def __init__(self, n_in: int, n_out: int, kw: int):
        super().__init__()
        self.kw = kw
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / (n_in * kw**2) ** 0.5)  # official init
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)


class DalleEncoderBlock(nn.Module):
    """``id_path(x) + post_gain * res_path(x)``: [B, n_in, H, W] -> [B, n_out, H, W]."""

    def __init__(self, n_in: int, n_out: int, n_layers: int):
        super().__init__()
        n_hid = n_out // 4
        self.post_gain = 1 / n_layers**2
        self.id_path = DalleConv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        self.res_path = nn.Sequential(OrderedDict([
            ("relu_1", nn.ReLU()), ("conv_1", DalleConv2d(n_in, n_hid, 3)),
            ("relu_2", nn.ReLU()), ("conv_2", DalleConv2d(n_hid, n_hid, 3)),
            ("relu_3", nn.ReLU()), ("conv_3", DalleConv2d(n_hid, n_hid, 3)),
            ("relu_4", nn.ReLU()), ("conv_4", DalleConv2d(n_hid, n_out, 1)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


class DalleEncoder(nn.Module):
    """The dVAE encoder: mapped pixels [B, 3, H, W] -> token logits [B, vocab_size, H/8, W/8]."""

    def __init__(self, n_hid: int = 256, n_blk_per_group: int = 2, input_channels: int = 3,
                 vocab_size: int = 8192):
        super().__init__()
        self.n_hid, self.n_blk_per_group, self.vocab_size = n_hid, n_blk_per_group, vocab_size
        n_layers = len(GROUP_WIDTHS) * n_blk_per_group
        layers: list[tuple[str, nn.Module]] = [("input", DalleConv2d(input_channels, n_hid, 7))]
        width = n_hid
        for g, mult in enumerate(GROUP_WIDTHS, start=1):
            group: list[tuple[str, nn.Module]] = []
            for j in range(n_blk_per_group):
                group.append((f"block_{j + 1}", DalleEncoderBlock(width, mult * n_hid, n_layers)))
                width = mult * n_hid
            if g < len(GROUP_WIDTHS):
                group.append(("pool", nn.MaxPool2d(kernel_size=2)))
            layers.append((f"group_{g}", nn.Sequential(OrderedDict(group))))
        layers.append(("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()),
                                                            ("conv", DalleConv2d(width, vocab_size, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.float())


class DalleTokenizer(Tokenizer):
    """BEiT's visual tokens: ``argmax`` of the dVAE encoder's logits on the image resized to ``8 x grid``."""

    def __init__(self, encoder: DalleEncoder):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.vocab_size = encoder.vocab_size

    @classmethod
    def from_file(cls, path: str | Path) -> DalleTokenizer:
        return cls(load_dalle_encoder(path))

    def train(self, mode: bool = True) -> DalleTokenizer:
        return super().train(False)  # always in eval mode

    @torch.no_grad()
    def forward(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """images [B, 3, H, W] (ImageNet-normalised) -> codes [B, h, w] int64.

        BEiT feeds the dVAE a second view of the crop at 112 px (lanczos) for 14x14 tokens; we resize the
        same crop to ``8 * grid`` px (bicubic, antialiased) and apply DALL-E's ``map_pixels``.
        """
        size = (grid[0] * DOWNSAMPLE, grid[1] * DOWNSAMPLE)
        x = F.interpolate(denormalize(images.float()), size=size, mode="bicubic", antialias=True,
                          align_corners=False).clamp(0.0, 1.0)
        x = (1 - 2 * LOGIT_LAPLACE_EPS) * x + LOGIT_LAPLACE_EPS  # [B, 3, 8h, 8w]
        return self.encoder(x).argmax(dim=1)  # [B, h, w]


class _PickledModule:
    """Inert stand-in for a module pickled by the official package: keeps its attribute dict, runs no code."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


_PICKLED_CLASSES = (  # every class a pickled official Encoder refers to
    "dall_e.encoder.Encoder", "dall_e.encoder.EncoderBlock", "dall_e.utils.Conv2d",
    "torch.nn.modules.container.Sequential", "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.pooling.MaxPool2d", "torch.nn.modules.linear.Identity",
)


def _module_tensors(module: _PickledModule, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of an unpickled module tree (its ``_parameters`` and ``_modules``, recursively)."""
    out: dict[str, torch.Tensor] = {}
    for name, param in (module.__dict__.get("_parameters") or {}).items():
        if param is not None:
            out[prefix + name] = param.detach()
    for name, child in (module.__dict__.get("_modules") or {}).items():
        if child is not None:
            out.update(_module_tensors(child, f"{prefix}{name}."))
    return out


def read_dalle_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a DALL-E encoder file: the official pickled module or a state dict.

    Raises:
        FileNotFoundError: no such file (the message says where to get it).
        ValueError: the file is not readable as either format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DALL-E encoder weights {path} do not exist. {WHERE_TO_GET}")
    try:
        with torch.serialization.safe_globals([(_PickledModule, name) for name in _PICKLED_CLASSES]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or one holding other objects
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a DALL-E encoder file ({reason}). {EXPECTED} {WHERE_TO_GET}") from err
    if isinstance(obj, _PickledModule):
        return _module_tensors(obj)
    for key in ("state_dict", "model", "encoder"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a DALL-E encoder. {EXPECTED} {WHERE_TO_GET}")
    return {k.removeprefix("encoder."): v for k, v in obj.items()}


def _encoder_sizes(sd: dict[str, torch.Tensor], path: Path) -> dict[str, int]:
    """n_hid, n_blk_per_group, input_channels, vocab_size read off the tensors' shapes."""
    if "blocks.input.w" not in sd or "blocks.output.conv.w" not in sd:
        raise ValueError(f"{path} lacks blocks.input.w / blocks.output.conv.w (found keys like "
                         f"{sorted(sd)[:4]}). {EXPECTED} {WHERE_TO_GET}")
    n_hid, channels = sd["blocks.input.w"].shape[:2]
    if channels != 3:
        raise ValueError(f"{path} takes {channels} input channels, not 3 (decoder.pkl is DALL-E's decoder; the "
                         f"tokenizer is the encoder). {EXPECTED} {WHERE_TO_GET}")
    pattern = re.compile(r"blocks\.group_1\.block_(\d+)\.res_path\.conv_1\.w")
    blocks = [int(m.group(1)) for k in sd if (m := pattern.fullmatch(k))]
    return {"n_hid": int(n_hid), "n_blk_per_group": max(blocks, default=1), "input_channels": 3,
            "vocab_size": int(sd["blocks.output.conv.w"].shape[0])}


def load_dalle_encoder(path: str | Path) -> DalleEncoder:
    """Build the encoder from a local file, checking every key and shape against the official layout.

    Raises:
        FileNotFoundError, ValueError: a missing or wrong file; the message says what was expected and
            where users get the official file.
    """
    path = Path(path)
    sd = read_dalle_state_dict(path)
    sizes = _encoder_sizes(sd, path)
    with torch.device("meta"):  # shapes only: the weights come from the file
        encoder = DalleEncoder(**sizes)
    expected = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in set(expected) & set(sd) if tuple(sd[k].shape) != expected[k])
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label} {keys[:5]}{' ...' if len(keys) > 5 else ''}" for label, keys in
                           (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)
        raise ValueError(f"{path} does not match the DALL-E encoder layout ({detail}). {EXPECTED} {WHERE_TO_GET}")
    encoder.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    return encoder
