"""Shared by the ESH-Vision tests: a tiny model, routers that mix, images."""
import math

import torch

import zoo
from learned_scalars import randomize_learned_scalars
from zoo import routing


def tiny(name="eshvision_xs", scalars=True, **kw):
    """A few-thousand-parameter ESH-Vision: 16x16x1 input, 4x4 then 2x2 patches. `scalars`
    perturbs what init leaves symmetric (norms, biases, halting bias: `learned_scalars`)."""
    args = dict(embed_dim=16, depths=(1, 2), num_heads=(2, 2), img_size=16)
    args.update(kw)
    torch.manual_seed(0)  # the same weights whatever ran before: tests that need mixed routes rely on it
    model = zoo.create_model(name, **args)
    return randomize_learned_scalars(model) if scalars else model


def mix_routers(model, seed=0, scale=4.0, bias=0.0):
    """Non-zero router weights, so patches of one image take both routes (and some ponder)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for r in routing.routers(model):
            last = r.net[-1]
            last.weight.copy_(torch.randn(last.weight.shape, generator=g) * scale / math.sqrt(last.in_features))
            last.bias.fill_(bias)
    return model


def images(b, c=1, s=16, seed=0):
    return torch.randn(b, c, s, s, generator=torch.Generator().manual_seed(seed))
