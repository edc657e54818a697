"""Helpers the Exp11 tests share: a tiny model with mixed routes, its routers' decisions, and one
forward in a given mode."""
import torch
from hypothesis import strategies as st

import zoo
from learned_scalars import randomize_learned_scalars
from zoo import routing

# small enough for many forwards; chunk 8 so sequences span several delta-rule chunks,
# random router init so eval routes are mixed
TINY = dict(vocab_size=64, max_seq_len=48, hidden=32, gdn=dict(num_heads=2, chunk_size=8),
            attn=dict(num_heads=2), mlp=dict(hidden=64), router=dict(zero_init=False))


def make(name="exp11_dynamic_tiny", seed=0, scalars=True, **overrides):
    """`scalars` perturbs what init leaves symmetric (RMSNorm weights: `learned_scalars`)."""
    torch.manual_seed(seed)
    model = zoo.create_model(name, **{**TINY, **overrides})
    return randomize_learned_scalars(model, seed) if scalars else model


def decisions(model):
    return [rec.decisions for rec in routing.trace(model)]


MIXES = ["add", "replace", "hide"]


def forward_in_mode(model, x, mode, seed):
    """(logits, decisions) of one no-grad forward: mode "train" (dense, the same random draws for
    every call with the same seed), or "sparse" / "dense" at eval."""
    torch.manual_seed(seed)
    if mode == "train":
        model.train()
        ctx = routing.execution(model, "dense")
    else:
        model.eval()
        ctx = routing.execution(model, mode)
    with ctx, torch.no_grad():
        return model(x), decisions(model)


def sparse_and_dense(model, x):
    """(sparse, dense) eval logits of one input, after checking that both took the same routes."""
    model.eval()
    with torch.no_grad():
        with routing.execution(model, "sparse"):
            sparse, ds = model(x), decisions(model)
        with routing.execution(model, "dense"):
            dense, dd = model(x), decisions(model)
    for a, b in zip(ds, dd):
        assert torch.equal(a, b)
    return sparse, dense


def check_causal(model, data, mode):
    """Logits and routes at t are unchanged when tokens after t change (hypothesis draws B, T, t)."""
    B, T = data.draw(st.integers(1, 3)), data.draw(st.integers(2, 40))
    t, seed = data.draw(st.integers(0, T - 2)), data.draw(st.integers(0, 1000))
    x = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(seed))
    y = x.clone()
    y[:, t + 1:] = torch.randint(0, 64, (B, T - t - 1))
    lx, dx = forward_in_mode(model, x, mode, seed)
    ly, dy = forward_in_mode(model, y, mode, seed)
    torch.testing.assert_close(ly[:, :t + 1], lx[:, :t + 1], atol=1e-5, rtol=0)
    for a, b in zip(dx, dy):
        assert torch.equal(a[:, :t + 1], b[:, :t + 1])
