"""Static per-layer plans are real models: the routed network with each routed layer fixed on one
choice, built without routers (docs/DESIGN.md, "Static plans")."""
import pytest
import torch

import zoo
from learned_scalars import randomize_learned_scalars
from zoo import routing


def _plan_policy(plan: dict):
    """A `zoo.routing.force` policy: each router (by layer name) on its plan's choice."""
    def policy(router, shape):
        return torch.full(tuple(shape), router.choices.index(plan[router.layer]), dtype=torch.long)
    return policy


def _randomised(model, seed=0):
    """Learned scalars away from their symmetric init (a mix logit at 0 hides a swapped branch)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mix_logit"):
                p.copy_(torch.randn(p.shape, generator=g) * 2)
    return model


def _transfer(routed, plan_name, **kw):
    plan = zoo.create_model(plan_name, **kw).eval()
    own = plan.state_dict()
    # an Exp11 plan's plain GDN layer holds the routed layer's mixer.gdn weights as mixer.*
    renamed = {k.replace(".mixer.gdn.", ".mixer."): v for k, v in routed.state_dict().items()
               if ".mixer.gdn." in k and k.replace(".mixer.gdn.", ".mixer.") in own}
    weights = {k: v for k, v in routed.state_dict().items() if k in own} | renamed
    missing = plan.load_state_dict(weights, strict=False)
    assert not missing.missing_keys, missing.missing_keys  # every weight of the plan is the routed model's
    return plan


@pytest.mark.parametrize("name", ["dhvn_nano", "eshvision_xs", "exp11_dynamic_tiny", "exp11_read_tiny",
                                  "exp11_read2_tiny"])
def test_every_plan_is_a_static_model_without_routers(name):
    plans = zoo.model_info(name)["static_plans"]
    assert len(plans) >= 2
    for plan in plans:
        assert zoo.model_info(plan)["routing"] == "static"
        model = zoo.create_model(plan)
        assert routing.routers(model) == []
        with pytest.raises(ValueError, match="no routers"):
            with routing.force(model, "conv"):
                pass


@pytest.mark.parametrize("plan_name, plan", [
    ("dhvn_nano_ccc", dict(zip(("encoder.0", "encoder.1", "decoder.0"), ("conv", "conv", "conv")))),
    ("dhvn_nano_cbc", dict(zip(("encoder.0", "encoder.1", "decoder.0"), ("conv", "both", "conv")))),
    ("dhvn_nano_static", dict(zip(("encoder.0", "encoder.1", "decoder.0"), ("both", "both", "both")))),
])
def test_a_dhvn_plan_computes_what_the_routed_network_forced_to_it_computes(plan_name, plan):
    kw = dict(num_classes=10, in_chans=1, img_size=28)
    routed = _randomised(zoo.create_model("dhvn_nano", **kw)).eval()
    static = _transfer(routed, plan_name, **kw)
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with routing.force(routed, _plan_policy(plan)):
        want = routed(x)
    torch.testing.assert_close(static(x), want, rtol=1e-5, atol=1e-5)


def test_the_esh_ssm_plan_computes_the_routed_network_forced_to_ssm():
    routed = zoo.create_model("eshvision_xs.mnist5k", pretrained=True).eval()
    static = _transfer(routed, "eshvision_xs_ssm")
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with routing.force(routed, "ssm"):
        want = routed(x)
    torch.testing.assert_close(static(x), want, rtol=1e-5, atol=1e-5)


def test_the_esh_attention_plan_ponders_every_patch_it_may():
    model = zoo.create_model("eshvision_xs_attn").eval()
    out = model.forward_dict(torch.randn(2, 1, 28, 28))
    # a fresh halting unit (bias 1: 0.73 per state) takes one extra step on every patch
    assert all(bool((s == 1).all()) for s in out["ponder_steps"])
    assert "ponder" in model.aux_losses() and "budget" not in model.aux_losses()


@pytest.mark.parametrize("plan_name, layers", [("exp11_baseline_tiny", ("gdn", "gdn")),
                                               ("exp11_ggbs_tiny", ("gdn", "softmax")),
                                               ("exp11_gbbs_tiny", ("softmax", "softmax"))])
def test_an_exp11_plan_computes_what_the_routed_network_forced_to_it_computes(plan_name, layers):
    routed = zoo.create_model("exp11_dynamic_tiny", max_seq_len=64).eval()
    static = _transfer(routed, plan_name, max_seq_len=64)
    x = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(3))
    with routing.force(routed, _plan_policy(dict(zip(("layers.1", "layers.2"), layers)))):
        want = routed(x)
    torch.testing.assert_close(static(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, plan_name, choices", [
    ("exp11_read_tiny", "exp11_baseline_tiny", ("softmax",)),
    ("exp11_read_tiny", "exp11_gggn_tiny", ("skip",)),
    ("exp11_read2_tiny", "exp11_ggss_tiny", ("softmax", "softmax")),
    ("exp11_read2_tiny", "exp11_ggns_tiny", ("skip", "softmax")),
    ("exp11_read2_tiny", "exp11_ggnn_tiny", ("skip", "skip")),
])
def test_an_exp11_read_plan_computes_what_the_routed_network_forced_to_it_computes(name, plan_name, choices):
    """A read layer with every token reading is a "softmax" layer, with every token skipping a
    "none" layer (its MLP alone); the plans take the routed model's weights under their own names."""
    routed = randomize_learned_scalars(zoo.create_model(name, max_seq_len=64)).eval()
    static = _transfer(routed, plan_name, max_seq_len=64)
    x = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(3))
    layers = [r.layer for r in routing.routers(routed)]
    with routing.force(routed, _plan_policy(dict(zip(layers, choices)))):
        want = routed(x)
    torch.testing.assert_close(static(x), want, rtol=0, atol=0)


def test_a_per_block_policy_of_the_wrong_length_or_choice_is_refused():
    with pytest.raises(ValueError, match="needs 3 choices"):
        zoo.create_model("dhvn_nano", policy=("conv", "both"))
    with pytest.raises(ValueError, match="needs 3 choices"):
        zoo.create_model("dhvn_nano", policy=("conv", "both", "bogus"))
    with pytest.raises(ValueError, match="policy must be None, 'ssm' or 'attention'"):
        zoo.create_model("eshvision_xs", policy="both")
