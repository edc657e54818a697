"""Seeded noise on the learned scalars that initialisation leaves symmetric.

At init DHVN's `mix_logit` is 0 (a = 0.5: conv and transformer weigh the same in "both"), every
norm is the identity affine map, biases are 0 and ESH's halting bias is the same 1 everywhere.
A test model left so cannot tell two branches apart where they meet: swapping conv and
transformer in DHVN's sparse "both" fusion passed every DHVN test (issue 21). So the test models
get these parameters perturbed, from a fixed generator, so that every test stays deterministic.

Routers are left alone: each test utility sets its routers itself (mixed routes), and a few
tests depend on a router's zero init (a fresh router leans to the cheapest choice).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from zoo import routing

# the noise's scale per kind of parameter: mix logits far enough from 0 that a (0.1..0.9) is
# clearly one-sided per channel; norms and biases by amounts a trained model shows
MIX_LOGIT_STD = 1.5
HALT_BIAS_STD = 0.5
OTHER_STD = 0.2


def _constant(p: torch.Tensor) -> bool:
    return p.numel() > 0 and not p.is_meta and bool((p == p.flatten()[0]).all())


def randomize_learned_scalars(model: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb (in place) every non-router parameter that init leaves constant, and give
    BatchNorms running statistics that are not the identity. Returns the model."""
    g = torch.Generator().manual_seed(10_000 + seed)
    in_router = {id(p) for r in routing.routers(model) for p in r.parameters()}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if id(p) in in_router or not _constant(p):
                continue
            if name.endswith("mix_logit"):
                std = MIX_LOGIT_STD
            elif name.endswith("halt.bias"):
                std = HALT_BIAS_STD
            else:
                std = OTHER_STD
            p.add_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * std)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None \
                    and not m.running_mean.is_meta:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model


def constant_parameters(model: nn.Module) -> list:
    """Names of non-router parameters that are still constant (for the helpers' own test)."""
    in_router = {id(p) for r in routing.routers(model) for p in r.parameters()}
    return [n for n, p in model.named_parameters() if id(p) not in in_router and _constant(p)]
