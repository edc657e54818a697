"""Deploy-time re-parameterisation: fold what inference no longer needs into the weights.

    model = zoo.reparameterize_model(zoo.create_model("dhvn_nano", pretrained=True).eval())

Each block that can does it in its own `reparameterize()` method (timm's convention: RepVGG,
MobileOne), today DHVN's conv-then-BatchNorm pairs (`zoo.families.dhvn.conv_branch`). The result computes
the same function up to float rounding, routes identically, and is for inference only.
`timm.utils.reparameterize_model` (validate.py --reparam, benchmark.py --reparam) gives the same
model: no zoo module has a `fuse` attribute, which timm would call as a method (DHVN's decoder conv
that merges the skip is `merge`; tests/test_timm_tools.py). This walk collects the blocks before
folding any, and refuses a model in training mode.
"""
from __future__ import annotations

import copy

import torch.nn as nn

__all__ = ["reparameterize_model"]


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """`model` (a deep copy unless `inplace`) with every block's `reparameterize()` applied.
    Raises RuntimeError for a model in training mode that has something to fold."""
    if not inplace:
        model = copy.deepcopy(model)
    # collect first: a block's reparameterize replaces its children
    for module in [m for m in model.modules() if callable(getattr(m, "reparameterize", None))]:
        module.reparameterize()
    return model
