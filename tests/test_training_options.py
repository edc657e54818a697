"""timm's training switches on the zoo models: set_grad_checkpointing and drop_path_rate."""
from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath

import zoo

VISION = {"eshvision_xs": dict(num_classes=10, in_chans=1, img_size=28),
          "dhvn_nano": dict(num_classes=10, in_chans=1, img_size=28)}
ROUTED = [*VISION, "exp11_dynamic_tiny"]


def _inputs(name):
    torch.manual_seed(1)
    return torch.randn(4, 1, 28, 28) if name in VISION else torch.randint(0, 256, (2, 32))


def _grads(name, checkpointing, **kw):
    torch.manual_seed(0)
    model = zoo.create_model(name, **VISION.get(name, {}), **kw).train()
    model.set_grad_checkpointing(checkpointing)
    x = _inputs(name)
    torch.manual_seed(2)  # the routers' Gumbel noise and drop path's draws
    loss = model(x).float().pow(2).mean() + sum(model.aux_losses().values())
    loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), {**grads, **{k: v for k, v in model.state_dict().items() if "running" in k
                                       or "num_batches" in k}}  # BatchNorm statistics: updated once


@pytest.mark.parametrize("name", ROUTED)
def test_grad_checkpointing_gives_the_same_loss_gradients_and_norm_statistics(name):
    kw = dict(drop_path_rate=0.2) if name in VISION else {}
    loss, plain = _grads(name, False, **kw)
    loss_ckpt, ckpt = _grads(name, True, **kw)
    assert torch.equal(loss, loss_ckpt)
    assert plain.keys() == ckpt.keys() and plain
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("name", ROUTED)
def test_grad_checkpointing_recomputes_in_backward(name):
    """The switch is real: checkpointed blocks keep fewer saved activations."""
    def saved(checkpointing):
        torch.manual_seed(0)
        model = zoo.create_model(name, **VISION.get(name, {})).train()
        model.set_grad_checkpointing(checkpointing)
        count = [0]

        def pack(t):
            count[0] += 1
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(_inputs(name)).float().sum().backward()
        return count[0]
    assert saved(True) < saved(False)


@pytest.mark.parametrize("name", list(VISION))
def test_drop_path_rate_rises_linearly_over_the_blocks(name):
    model = zoo.create_model(name, **VISION[name], drop_path_rate=0.3)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) == pytest.approx(0.3)
    assert rates == sorted(rates)
    assert not any(isinstance(m, DropPath) for m in zoo.create_model(name, **VISION[name]).modules())


@pytest.mark.parametrize("name", list(VISION))
def test_drop_path_acts_in_training_only(name):
    torch.manual_seed(0)
    plain = zoo.create_model(name, **VISION[name]).eval()
    dropped = zoo.create_model(name, **VISION[name], drop_path_rate=0.5)
    dropped.load_state_dict(plain.state_dict())
    x = _inputs(name)
    with torch.no_grad():
        torch.testing.assert_close(dropped.eval()(x), plain(x), rtol=0, atol=0)  # no effect at eval
        dropped.train()
        plain.train()
        torch.manual_seed(5)
        a = dropped(x)
        torch.manual_seed(5)
        b = plain(x)
    assert not torch.allclose(a, b)


def test_drop_path_rate_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"drop_path_rate must lie in \[0, 1\)"):
        zoo.create_model("eshvision_xs", drop_path_rate=1.0)
