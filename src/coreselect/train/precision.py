"""Which precision forwards run in: fp32, bf16 autocast, or ``auto`` (bf16 where the device computes it natively).

bf16 pays only on hardware with bf16 arithmetic: a GPU that supports it, or a CPU with AVX512-BF16 or AMX
(there LeNet forwards run about 1.6x faster than fp32). Elsewhere PyTorch emulates it, and a forward can take
ten times as long as in fp32 or more (a no-grad LeNet forward on an AVX2-only CPU: 420 against 40 µs an example).
``auto`` picks bf16 only where it is native, so a configuration written for one machine does not crawl on another.
"""

from __future__ import annotations

from typing import Literal

import torch

PrecisionName = Literal["fp32", "bf16", "auto"]
ConcretePrecision = Literal["fp32", "bf16"]
PRECISION = "precision"  # the name of a run's record in the results store: the precisions it ran in
AUTOCAST_DTYPES: dict[ConcretePrecision, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}  # None: none


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 in hardware (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":  # native from compute capability 8 (Ampere) on; ROCm devices compute it
        return torch.cuda.is_available() and (torch.version.hip is not None
                                              or torch.cuda.get_device_capability(device)[0] >= 8)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def resolve_precision(name: PrecisionName, device: torch.device | str) -> ConcretePrecision:
    """``name`` with ``auto`` made concrete for ``device``: bf16 where it is native, else fp32."""
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def autocast_dtype(name: PrecisionName, device: torch.device | str) -> torch.dtype | None:
    """The dtype to autocast forwards to under ``name`` on ``device`` (None: no autocast, fp32)."""
    return AUTOCAST_DTYPES[resolve_precision(name, device)]
