"""Exp11 sparse execution: it equals dense execution on mixed, forced and one-sided routes."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from exp11_testutils import MIXES, TINY, make, sparse_and_dense

import zoo
from zoo import routing


@pytest.mark.parametrize("mix", MIXES)
@settings(max_examples=12)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 48))
def test_sparse_equals_dense_on_mixed_routes(mix, seed, B, T):
    model = make(seed=seed % 7, mix=mix)
    x = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(seed))
    sparse, dense = sparse_and_dense(model, x)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("choice", ["gdn", "softmax", "random"])
@pytest.mark.parametrize("B", [1, 3])
def test_sparse_equals_dense_forced(choice, B, mix):
    model = make(mix=mix)
    x = torch.randint(0, 64, (B, 37), generator=torch.Generator().manual_seed(B))

    def fixed_random(router, shape):  # the same draw in the sparse and the dense forward
        g = torch.Generator().manual_seed(len(router.layer) + int(router.layer[-1]))
        return (torch.rand(shape, generator=g) < 0.7).long()

    policy = fixed_random if choice == "random" else choice
    with routing.force(model, policy):
        sparse, dense = sparse_and_dense(model, x)
        shares = [rec.shares() for rec in routing.trace(model)]
    if choice != "random":
        assert all(s[choice] == 1.0 for s in shares)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mix", ["add", "replace"])
def test_every_token_on_softmax_runs_the_plain_causal_kernel_and_trains_like_dense(mix, monkeypatch):
    """A routed layer whose every token chose softmax calls attention over the whole sequence
    (no packed queries), and in sparse training its output and the router's gradient are those
    of dense execution."""
    import zoo.families.exp11.causal_attention as ca

    def refuse(*a, **k):
        raise AssertionError("packed queries used although every token asks")

    x = torch.randint(0, 64, (2, 21), generator=torch.Generator().manual_seed(4))
    results = {}
    for mode in ("sparse", "dense"):
        model = make(mix=mix)
        model.train()
        for r in model.routers:  # every token prefers softmax, by a wide margin
            with torch.no_grad():
                r.net[-1].bias.copy_(torch.tensor([-30.0, 30.0]))
            r.spec = r.spec.replace(explore=0.0)
        with routing.execution(model, mode):
            if mode == "sparse":
                monkeypatch.setattr(ca, "sorted_query_attention", refuse)
            out = model(x)
            monkeypatch.undo()
        assert all(rec.shares()["softmax"] == 1.0 for rec in routing.trace(model))
        out.square().mean().backward()
        results[mode] = out.detach(), [r.net[-1].weight.grad.clone() for r in model.routers]
    torch.testing.assert_close(results["sparse"][0], results["dense"][0], atol=1e-5, rtol=0)
    for gs, gd in zip(results["sparse"][1], results["dense"][1]):
        torch.testing.assert_close(gs, gd, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("mix", MIXES)
def test_sparse_equals_dense_with_a_row_that_has_no_gdn_token(mix):
    model = make(mix=mix)
    x = torch.randint(0, 64, (3, 20), generator=torch.Generator().manual_seed(5))

    def policy(router, shape):  # row 0 all softmax, row 1 all gdn, row 2 alternating
        d = torch.zeros(shape, dtype=torch.long)
        d[0] = 1
        d[2, ::2] = 1
        return d

    with routing.force(model, policy):
        sparse, dense = sparse_and_dense(model, x)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)


def test_static_model_matches_routed_model_forced_to_the_same_plan():
    dyn = make(layers=("gdn", "routed", "softmax"))
    static = zoo.create_model("exp11_baseline_tiny", **{**TINY, "layers": ("gdn", "gdn", "softmax")})
    own = static.state_dict()
    for k, v in dyn.state_dict().items():  # routed layer 1's gdn mixer -> static layer 1's mixer
        own[k.replace("layers.1.mixer.gdn.", "layers.1.mixer.")] = v
    static.load_state_dict({k: v for k, v in own.items()}, strict=False)
    x = torch.randint(0, 64, (2, 30))
    static.eval(), dyn.eval()
    with torch.no_grad(), routing.force(dyn, "gdn"):
        torch.testing.assert_close(dyn(x), static(x), atol=1e-5, rtol=0)


