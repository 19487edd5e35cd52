"""Dense peak TFLOP/s of GPUs: the MFU of ``mixmim.bench`` and the cost estimates of
``experiments.cost`` divide by these. Plain data (no torch), so that ``mixmim-bench show --cost`` and
``report`` read it without loading the model stack.
"""

# Dense (no sparsity) peak TFLOP/s by device-name pattern and precision, from NVIDIA's data sheets (SXM parts;
# NVL variants are lower). The first matching pattern wins, so more specific names come first.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "L40S": {"bf16": 362.1, "fp16": 362.1, "tf32": 183.0, "fp32": 91.6},
    "A10": {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2},
    "V100": {"fp16": 125.0, "fp32": 15.7},
}

# Memory per GPU in GB (10^9 bytes), by the same patterns: the largest variant of each (A100 80 GB, V100 32 GB;
# H100 SXM/PCIe 80 GB; H200 141 GB; NVIDIA data sheets). The preflight's fits-in-memory check reads these.
MEMORY_GB: dict[str, float] = {"H200": 141.0, "H100 PCIe": 80.0, "H100": 80.0, "A100": 80.0, "L40S": 48.0,
                               "A10": 24.0, "V100": 32.0}  # fmt: skip
