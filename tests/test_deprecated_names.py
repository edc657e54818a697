"""Names and paths that changed keep working for one release, each with a DeprecationWarning
(docs/DESIGN.md, glossary and "Layout")."""
import importlib
import sys

import pytest
import torch

import zoo
from zoo.specs import RouterSpec


@pytest.mark.parametrize("old,new", [
    ("zoo.models.dhvn", "zoo.families.dhvn.model"),
    ("zoo.models.eshvision", "zoo.families.eshvision.model"),
    ("zoo.models.exp11", "zoo.families.exp11.model"),
    ("zoo.blocks.objectives", "zoo.layers.objectives"),
    ("zoo.blocks.causal_attention", "zoo.families.exp11.causal_attention"),
])
def test_moved_modules_import_from_their_old_path_as_the_same_module(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_from_old_family_module_import_its_classes(monkeypatch):
    monkeypatch.delitem(sys.modules, "zoo.models.dhvn", raising=False)
    with pytest.warns(DeprecationWarning):
        from zoo.models.dhvn import DHVN
    assert DHVN is zoo.get_family("dhvn").model_class


def test_router_spec_budget_is_now_compute_target():
    with pytest.warns(DeprecationWarning, match="RouterSpec.budget is now RouterSpec.compute_target"):
        spec = RouterSpec(mode="hard", budget=0.6)
    assert spec == RouterSpec(mode="hard", compute_target=0.6)
    with pytest.warns(DeprecationWarning):
        assert spec.budget == 0.6
    with pytest.warns(DeprecationWarning):
        assert spec.replace(budget=0.4).compute_target == 0.4
    with pytest.warns(DeprecationWarning):   # a config or checkpoint written with the old name
        assert RouterSpec.from_dict(dict(mode="hard", budget=0.7)).compute_target == 0.7
    with pytest.raises(TypeError, match="both budget"), pytest.warns(DeprecationWarning):
        RouterSpec(budget=0.5, compute_target=0.6)
    assert spec.to_dict()["compute_target"] == 0.6 and "budget" not in spec.to_dict()


def test_create_model_takes_the_old_router_keyword():
    with pytest.warns(DeprecationWarning):
        model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=28, router=dict(budget=0.7))
    assert model.spec.router.compute_target == 0.7 and model.spec.router.mode == "hard"


def test_routing_budget_is_now_flops_budget():
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=16).eval()
    calib = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    fit = zoo.routing.fit_budget(model, 0.6, calib)
    with pytest.warns(DeprecationWarning, match="zoo.routing.budget is now zoo.routing.flops_budget"):
        context = zoo.routing.budget(model, fit)
    with context as applied, torch.no_grad():
        assert applied is fit and all(r.cost_shift == fit.shift for r in zoo.routing.routers(model))
    assert all(r.cost_shift == 0.0 for r in zoo.routing.routers(model))
