"""Numeric precision: ``auto`` resolution and the autocast dtype generation uses.

``train.precision`` takes Lightning's names plus ``auto``: bf16 mixed precision where the device
multiplies bf16 matrices natively (a CUDA GPU with bf16 support, or a CPU with AMX tiles, where a
bf16 matmul runs about 4x faster than fp32), fp32 everywhere else. Generation (evaluation,
probe answers, the seed's benign answers) runs under the same autocast as training unless
``eval.precision`` / ``align.answer_precision`` choose another. The
divergence monitor always measures in fp32. ``align.dtype: auto`` stores the frozen base in bf16
during the seed's safety SFT on the same hardware (:func:`resolve_weight_dtype`).
"""

from __future__ import annotations

from lat.core.registry import unknown_name

AUTOCAST = {"32-true": None, "64-true": None, "bf16-true": None, "16-true": None, "bf16-mixed": "bfloat16", "16-mixed": "float16"}
"""Lightning precision -> the autocast dtype it implies (None: weights already in that dtype)."""


def native_bf16(accelerator: str = "auto") -> bool:
    """Whether the device ``accelerator`` picks multiplies bf16 matrices in hardware."""
    import torch  # only when probing the hardware: checking a config's names needs no torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if accelerator in ("auto", "cpu"):
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx and amx())
    return False


def resolve_precision(precision: str, accelerator: str = "auto", setting: str = "train.precision") -> str:
    """``auto`` -> ``bf16-mixed`` on native-bf16 hardware, else ``32-true``; others are checked.

    Raises:
        UserError: An unknown precision name (the message names ``setting``).
    """
    if precision == "auto":
        return "bf16-mixed" if native_bf16(accelerator) else "32-true"
    if precision not in AUTOCAST:
        raise unknown_name(setting, "", precision, ["auto", *AUTOCAST])
    return precision


def autocast_dtype(precision: str, accelerator: str = "auto", setting: str = "train.precision") -> str | None:
    """The autocast dtype name (``"bfloat16"`` ...) that ``precision`` implies for generation."""
    return AUTOCAST[resolve_precision(precision, accelerator, setting)]


WEIGHT_DTYPES = ("float32", "bfloat16", "float16")
"""Weight storage dtypes a model can be loaded in (``model.dtype``, ``align.dtype``)."""


def resolve_weight_dtype(dtype: str | None, default: str, accelerator: str = "auto", setting: str = "align.dtype") -> str:
    """A weight storage dtype: ``auto`` -> ``bfloat16`` on native-bf16 hardware, else ``default``;
    None -> ``default``; a name is checked and kept.

    Raises:
        UserError: An unknown dtype name (the message names ``setting``).
    """
    if dtype == "auto":
        return "bfloat16" if native_bf16(accelerator) else default
    if dtype is not None and dtype not in WEIGHT_DTYPES:
        raise unknown_name(setting, "", dtype, ["auto", *WEIGHT_DTYPES])
    return dtype or default
