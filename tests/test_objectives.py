"""Routing objectives are one list of objects (zoo.layers.objectives); aux_losses() is written once."""
import torch

import zoo
from harness.engine.wrappers import ZooClassifier
from zoo.layers.objectives import OBJECTIVES, Objective
from zoo.families.dhvn.model import DHVN

VISION_KW = dict(num_classes=10, in_chans=1, img_size=28)


def test_every_family_declares_registered_objectives_and_aux_losses_follow_them():
    for name in ("dhvn_nano", "eshvision_xs", "exp11_dynamic_tiny"):
        model = zoo.create_model(name, **({} if name.startswith("exp11") else VISION_KW)).train()
        assert model.objectives and all(OBJECTIVES[o.name] is o for o in model.objectives)
        x = torch.randint(0, 256, (2, 16)) if name.startswith("exp11") else torch.randn(2, 1, 28, 28)
        model(x)
        assert list(model.aux_losses()) == [o.name for o in model.objectives]   # in declared order


def test_a_new_objective_is_one_object_and_one_line_in_its_family():
    """What a new objective takes: the object (with its default weight), and the family's list."""
    toy = Objective("router_l2", 0.3, lambda m: torch.stack([r.probs.pow(2).mean() for r in m.last_routes()]).sum()
                    if m.last_routes() else None)

    class ToyDHVN(DHVN):
        objectives = DHVN.objectives + (toy,)

    net = ToyDHVN(zoo.resolve_spec("dhvn_nano", **VISION_KW)[1]).train()
    net(torch.randn(2, 1, 28, 28))
    assert "router_l2" in net.aux_losses() and net.aux_losses()["router_l2"].requires_grad
    OBJECTIVES[toy.name] = toy   # registered: the harness weights it by its default
    try:
        model = ZooClassifier("dhvn_nano", arch_kwargs=VISION_KW)
        model.net, model.objectives = net, {o.name: o for o in net.objectives}
        model.aux_weights = {o.name: o.weight for o in net.objectives}
        out = model(torch.randn(2, 1, 28, 28), torch.tensor([0, 1]), mode="loss")
        torch.testing.assert_close(out["loss_router_l2"], 0.3 * net.aux_losses()["router_l2"])
    finally:
        del OBJECTIVES[toy.name]


def test_static_models_and_fresh_copies_have_no_aux_losses():
    static = zoo.create_model("dhvn_nano_static", **VISION_KW).train()
    static(torch.randn(2, 1, 28, 28))
    assert static.aux_losses() == {}
    assert zoo.create_model("dhvn_nano", **VISION_KW).aux_losses() == {}   # before any forward
