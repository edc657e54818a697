"""Helpers the DHVN tests share: a tiny model with mixed routes, real-shaped images, and the
sparse == dense check."""
import torch

from learned_scalars import randomize_learned_scalars

import zoo
from zoo import routing

IMG = 16  # two stages: stride 4, features at 8x8


def make(name="dhvn_nano", seed=0, sharp_router=True, scalars=True, **overrides):
    """A tiny model; `sharp_router` gives random, large router weights so routes are mixed;
    `scalars` perturbs what init leaves symmetric (mix_logit, norms, biases: `learned_scalars`)."""
    kw = dict(num_classes=5, in_chans=3, img_size=IMG)
    kw.update(overrides)
    torch.manual_seed(seed)
    model = zoo.create_model(name, **kw)
    if sharp_router:
        for r in routing.routers(model):
            torch.nn.init.normal_(r.net[-1].weight, std=3.0)
            torch.nn.init.normal_(r.net[-1].bias, std=1.0)
    if scalars:
        randomize_learned_scalars(model, seed)
    return model.eval()


def images(batch, seed=1, size=IMG, chans=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, chans, size, size, generator=g)


def run(model, x, mode):
    with torch.no_grad(), routing.execution(model, mode):
        out = model(x)
        decisions = [r.decisions.clone() for r in routing.trace(model)]
    return out, decisions


def assert_sparse_equals_dense(model, x):
    dense, d_dec = run(model, x, "dense")
    sparse, s_dec = run(model, x, "sparse")
    for a, b in zip(d_dec, s_dec):
        assert torch.equal(a, b)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)
    return d_dec
