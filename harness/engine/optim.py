"""--amp on CPU. mmengine's AmpOptimWrapper asserts a GPU, so CPU runs get this wrapper:
bfloat16 autocast around the forward pass, and no loss scaling (bfloat16 keeps fp32's range)."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner.amp import autocast

__all__ = ["CPUAutocastOptimWrapper"]


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), autocast(device_type="cpu", dtype=torch.bfloat16):
            yield
