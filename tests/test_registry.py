"""Registry, specs and bridges: the config-as-code surface of the zoo."""
import pytest
import torch

import zoo
from zoo.registry import resolve_spec

SEED_VARIANTS = ["dhvn_tiny", "dhvn_small", "dhvn_base", "eshvision_s", "eshvision_m", "eshvision_l",
                 "exp11_baseline", "exp11_dynamic"]
SMALL_VARIANTS = ["dhvn_nano", "eshvision_xs", "exp11_baseline_tiny", "exp11_dynamic_tiny"]


def test_every_seed_and_small_variant_is_registered():
    names = zoo.list_models()
    for n in SEED_VARIANTS + SMALL_VARIANTS:
        assert n in names
    assert names == sorted(names)


def test_list_models_filters_and_tags():
    assert zoo.list_models("dhvn_*") and all(n.startswith("dhvn_") for n in zoo.list_models("dhvn_*"))
    both = zoo.list_models(["dhvn_*", "exp11_*"])
    assert set(both) == set(zoo.list_models("dhvn_*")) | set(zoo.list_models("exp11_*"))
    assert "dhvn_base" not in zoo.list_models("dhvn_*", exclude_filters=["*_base*"])
    lms = zoo.list_models(tags={"task": "causal-lm"})
    assert set(lms) == set(zoo.list_models("exp11_*"))
    assert "eshvision_s" in zoo.list_models(tags={"routing": "patch"})
    assert "exp11_baseline" in zoo.list_models(tags={"routing": "static"})
    assert "exp11_dynamic" in zoo.list_models(tags={"routing": "token"})
    assert "dhvn_tiny" in zoo.list_models(tags={"routing": "sample"})
    assert zoo.list_models("nothing_*") == []


def test_unknown_model_names_close_matches():
    with pytest.raises(zoo.UnknownModelError, match="dhvn_tiny"):
        zoo.create_model("dhvn_tinny")
    with pytest.raises(zoo.UnknownModelError, match="unknown model 'nope'"):
        zoo.create_model("nope")
    with pytest.raises(zoo.UnknownModelError):
        zoo.model_info("eshvison_s")


def test_unknown_override_is_type_error_naming_valid_keys():
    with pytest.raises(TypeError, match="num_classes"):
        zoo.create_model("dhvn_nano", num_clases=10)
    with pytest.raises(TypeError, match="vocab_size"):
        zoo.create_model("exp11_baseline_tiny", vocab=10)


def test_pretrained_is_refused_clearly():
    # dhvn_nano ships weights now (tests/test_pretrained.py); a model without any is refused
    with pytest.raises(ValueError, match="no pretrained weights are shipped for dhvn_tiny .tags: dhvn_nano.mnist5k"):
        zoo.create_model("dhvn_tiny", pretrained=True)


@pytest.mark.parametrize("name", SEED_VARIANTS + SMALL_VARIANTS)
def test_model_info_is_plain_and_complete(name):
    info = zoo.model_info(name)
    assert set(info) >= {"name", "family", "task", "routing", "tags", "spec", "default_input_size", "params"}
    assert info["task"] in ("image-classification", "causal-lm")
    assert info["routing"] in ("sample", "patch", "token", "static")
    assert isinstance(info["spec"], dict) and info["params"] > 0
    cls, spec = resolve_spec(name)
    assert type(spec).from_dict(spec.to_dict()) == spec
    assert type(spec).from_dict(info["spec"]) == spec


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


@pytest.mark.parametrize("name,overrides", [
    ("dhvn_nano", dict(num_classes=7, in_chans=1, img_size=32)),
    ("eshvision_xs", dict(num_classes=5, in_chans=1, img_size=28)),
    ("exp11_dynamic_tiny", dict(vocab_size=300, max_seq_len=64)),
])
def test_edited_spec_builds_the_same_model_as_overrides(name, overrides):
    cls, spec = resolve_spec(name)
    edited = spec.replace(**overrides)
    torch.manual_seed(0)
    a = zoo.create_model(name, **overrides)
    torch.manual_seed(0)
    b = cls(type(spec).from_dict(edited.to_dict()))
    assert a.spec == edited
    assert _same_state(a, b)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_timm_bridge():
    import timm
    m = timm.create_model("dhvn_nano", num_classes=3, in_chans=1, img_size=28)
    assert m.num_classes == 3
    assert set(zoo.list_models("dhvn_*")) <= set(timm.list_models("dhvn_*"))
    # LMs stay out of timm's image-model registry, and stay reachable through zoo and mmengine
    assert timm.list_models("exp11_*") == []
    with pytest.raises(RuntimeError, match="Unknown model"):
        timm.create_model("exp11_dynamic_tiny")
    from mmengine.registry import MODELS
    zoo.register_mmengine()
    assert zoo.create_model("exp11_dynamic_tiny").task == MODELS.build(dict(type="exp11_dynamic_tiny")).task


def test_mmengine_bridge():
    from mmengine.registry import MODELS
    zoo.register_mmengine()
    m = MODELS.build(dict(type="dhvn_nano", num_classes=10, in_chans=1, img_size=28))
    assert m.num_classes == 10 and m.in_chans == 1
    lm = MODELS.build(dict(type="exp11_baseline_tiny", vocab_size=256))
    assert lm.vocab_size == 256


def test_import_zoo_leaves_mmengine_out_until_it_is_bridged():
    """`import zoo` stays light: mmengine is imported only when bridged (the harness bridges it),
    and a process that imported mmengine's registry first finds the zoo's models there at once."""
    import subprocess
    import sys
    code = ("import sys, zoo; assert 'mmengine' not in sys.modules, 'mmengine imported'; "
            "zoo.register_mmengine(); from mmengine.registry import MODELS; "
            "assert MODELS.get('dhvn_nano') is not None; zoo.register_mmengine()")
    subprocess.run([sys.executable, "-c", code], check=True)
    first = ("from mmengine.registry import MODELS; import zoo; assert MODELS.get('eshvision_xs') is not None")
    subprocess.run([sys.executable, "-c", first], check=True)
    harness = "import harness.engine.wrappers; from mmengine.registry import MODELS; assert MODELS.get('exp11_dynamic_tiny')"
    subprocess.run([sys.executable, "-c", harness], check=True)


def test_vision_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="in_chans"):
        zoo.create_model("dhvn_nano", in_chans=0)
