"""Pretrained tags: weights that ship inside the package, loaded with no network.

A tag is `<model>.<suite>`, e.g. `dhvn_nano.mnist5k`: the model trained by the README job
(`python -m harness embedded`, seed 0) on that suite, exported with `python -m harness export`.
`zoo.create_model("dhvn_nano.mnist5k", pretrained=True)` and
`timm.create_model("dhvn_nano.mnist5k", pretrained=True)` build the model with the tag's input
shape and classes and load its safetensors file; `pretrained_cfg_overlay=dict(file=PATH)` loads a
file of one's own instead. An unknown tag is an error, never a silently random model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import torch

__all__ = ["PretrainedTag", "PRETRAINED", "WEIGHTS_DIR", "tags_of", "resolve_tag", "plan", "load_weights",
           "timm_cfgs"]

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
MNIST = dict(mean=(0.1307,), std=(0.3081,))


@dataclass(frozen=True)
class PretrainedTag:
    model: str
    tag: str
    kwargs: Mapping[str, object]          # the constructor fields the weights were trained with
    source: str                           # what produced them
    cfg: Mapping[str, object] = field(default_factory=dict)  # timm pretrained-cfg fields

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def file(self) -> str:
        return os.path.join(WEIGHTS_DIR, f"{self.name}.safetensors")


def _vision(model: str, suite: str, img: int, chans: int, classes: int, norm: dict) -> PretrainedTag:
    return PretrainedTag(model, suite, dict(num_classes=classes, in_chans=chans, img_size=img, **norm),
                         f"python -m harness embedded (seed 0), work_dirs/embedded/{suite}/{model}/seed0",
                         dict(input_size=(chans, img, img), num_classes=classes, crop_pct=1.0, **norm))


PRETRAINED: Dict[str, PretrainedTag] = {t.name: t for t in (
    _vision("dhvn_nano", "mnist5k", 28, 1, 10, MNIST),
    _vision("eshvision_xs", "mnist5k", 28, 1, 10, MNIST),
    PretrainedTag("exp11_dynamic_tiny", "pydocs", dict(vocab_size=256, max_seq_len=256),
                  "python -m harness embedded (seed 0), work_dirs/embedded/pydocs/exp11_dynamic_tiny/seed0"),
)}


def tags_of(model: str) -> Tuple[str, ...]:
    return tuple(t.tag for t in PRETRAINED.values() if t.model == model)


def resolve_tag(model: str, pretrained_cfg=None) -> Optional[PretrainedTag]:
    """The tag a create call names: `pretrained_cfg` may be a tag string (timm passes the part
    after the dot), a dict or timm PretrainedCfg with a `tag`, or None (the model's only tag)."""
    tag = pretrained_cfg
    if tag is not None and not isinstance(tag, str):
        tag = (tag.get("tag") if isinstance(tag, Mapping) else getattr(tag, "tag", None))
    known = tags_of(model)
    if not tag:
        return PRETRAINED[f"{model}.{known[0]}"] if len(known) == 1 else None
    if tag not in known:
        have = ", ".join(f"{model}.{t}" for t in known) or "none"
        raise ValueError(f"unknown pretrained tag {model}.{tag}; shipped tags of {model}: {have}")
    return PRETRAINED[f"{model}.{tag}"]


@dataclass(frozen=True)
class Weights:
    file: str
    kwargs: Mapping[str, object]   # constructor fields the file was trained with (defaults under the caller's)
    source: Mapping[str, object]   # what the model's pretrained_cfg reports: file, and tag when shipped
    new_head: bool = False         # the classifier stays freshly initialised (another num_classes)


def plan(name: Optional[str], what: str, pretrained: bool, overrides: Mapping[str, object]) -> Optional[Weights]:
    """The weights a create call asks for, checked before anything is built. `name` is the entry
    point (None outside create_model / timm / mmengine); `overrides` the caller's kwargs, with
    timm's pretrained_cfg (a tag) and pretrained_cfg_overlay (dict(file=...)). An unknown tag is
    an error even without pretrained=True: it must never build a silently random model."""
    tag = resolve_tag(name, overrides.get("pretrained_cfg")) if name else None
    own = (overrides.get("pretrained_cfg_overlay") or {}).get("file")
    if not pretrained:
        return None
    if own:
        return Weights(own, {}, dict(file=own))
    if tag is None:
        raise ValueError(f"no pretrained weights are shipped for {name or what} (tags: "
                         f"{', '.join(PRETRAINED) or 'none'}); pass "
                         f"pretrained_cfg_overlay=dict(file=PATH) for weights of your own")
    # another num_classes fine-tunes, as in timm: every weight but the classifier's is loaded
    new_head = "num_classes" in overrides and overrides["num_classes"] != tag.kwargs.get("num_classes")
    clash = {k: v for k, v in overrides.items()
             if k in tag.kwargs and v != tag.kwargs[k] and k != "num_classes"}
    if clash:  # the shape the weights were trained at, unless the caller asks for the same one
        raise ValueError(f"pretrained {tag.name} was trained with "
                         f"{', '.join(f'{k}={tag.kwargs[k]!r}' for k in clash)}; got "
                         f"{', '.join(f'{k}={v!r}' for k, v in clash.items())}")
    kwargs = {k: v for k, v in tag.kwargs.items() if not (new_head and k == "num_classes")}
    return Weights(tag.file, kwargs, dict(file=tag.file, tag=tag.tag), new_head)


def load_weights(model: torch.nn.Module, path: str, skip: Optional[str] = None) -> None:
    """A safetensors file, or a torch state dict / harness checkpoint read weights-only, that must
    fit `model` exactly (keys and shapes). skip: a module name (the classifier, when fine-tuning
    with another num_classes) whose weights are neither loaded nor required."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"pretrained weights {path} do not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if any(k.startswith("net.") for k in state):  # a harness checkpoint wraps the network
            state = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
    ours = model.state_dict()
    if skip:
        drop = lambda d: {k: v for k, v in d.items() if not (k == skip or k.startswith(skip + "."))}
        state, ours = drop(state), drop(ours)
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    shapes = [k for k in ours if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or shapes:
        detail = (f"{len(missing)} missing (e.g. {missing[:1]}), {len(unexpected)} unexpected (e.g. "
                  f"{unexpected[:1]}), {len(shapes)} of another shape (e.g. {shapes[:1]})")
        raise ValueError(f"weights {path} do not fit {type(model).__name__}: {detail}")
    model.load_state_dict(state, strict=not skip)


def timm_cfgs(model: str, cls, spec) -> dict:
    """timm's `default_cfgs` entries of one zoo vision model (its class and default spec): an
    untagged cfg, and one per shipped tag, with its file (so timm lists it under
    `list_models(pretrained=True)`)."""
    from timm.models import generate_default_cfgs
    common = dict(first_conv=cls.first_conv, classifier="head")
    cfgs = {}
    for tag in tags_of(model):
        t = PRETRAINED[f"{model}.{tag}"]
        cfgs[t.name] = dict(common, **t.cfg, file=t.file, notes=(t.source,))
    # the untagged cfg stays timm's default: it comes after the tags and is marked ".*".
    # Otherwise timm makes the first tag with weights the default, and its input_size (1x28x28
    # digits) would describe an untagged create_model, which builds the spec's defaults
    cfgs[f"{model}.*"] = dict(common, num_classes=spec.num_classes, input_size=cls.default_input_size(spec),
                              mean=tuple(spec.mean), std=tuple(spec.std))
    return generate_default_cfgs(cfgs)
