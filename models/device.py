"""The ``device`` setting (``auto | cpu | cuda``) as a torch device, in one place.

Reward training and RLHF both read ``params.yaml: device``; one resolver keeps them in
step: ``auto`` means CUDA when it is available, and asking for CUDA on a machine without
it is an error up front rather than a failure deep inside the first forward pass.
"""

from __future__ import annotations

import warnings

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; ``"cpu"``; ``"cuda"`` (or ``"cuda:N"``) only if CUDA is available."""
    if isinstance(name, torch.device):
        dev = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(dev)!r} requested but CUDA is not available (use device: auto or cpu)")
    return dev


def bf16_autocast(device: torch.device, enabled: bool, setting: str) -> torch.autocast:
    """A bf16 autocast context for ``device``; warns when a CPU would emulate bf16 (slower than float32).

    ``setting`` names the params key that turned it on (for the warning)."""
    if enabled and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        warnings.warn(f"{setting} is on but this CPU has no native bf16 (AVX512-BF16 / AMX): it will run slower "
                      f"than in float32; set {setting}: false", stacklevel=3)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
