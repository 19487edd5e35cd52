"""BEiT's tokenizers: one interface, a k-means codebook fitted by the suite, and the DALL-E dVAE encoder."""

from baselines.tokenizers.dalle import DALLE_ENCODER_URL, DalleEncoder, DalleTokenizer, load_dalle_encoder
from baselines.tokenizers.interface import Tokenizer
from baselines.tokenizers.kmeans import KMeansTokenizer
from baselines.tokenizers.stage import build_tokenizer, run_tokenizer_stage

__all__ = [
    "DALLE_ENCODER_URL", "DalleEncoder", "DalleTokenizer", "KMeansTokenizer", "Tokenizer", "build_tokenizer",
    "load_dalle_encoder", "run_tokenizer_stage",
]
