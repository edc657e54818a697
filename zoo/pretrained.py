"""Pretrained tags: weights that ship inside the package, loaded with no network.

A tag is `<model>.<suite>`, e.g. `dhvn_nano.mnist5k`: the model trained by the README job
(`python -m harness embedded`, seed 0) on that suite, exported with `python -m harness export`.
`zoo.create_model("dhvn_nano.mnist5k", pretrained=True)` and
`timm.create_model("dhvn_nano.mnist5k", pretrained=True)` build the model with the tag's input
shape and classes and load its safetensors file; `pretrained_cfg_overlay=dict(file=PATH)` loads a
file of one's own instead. An unknown tag is an error, never a silently random model.

Each model's `pretrained_cfg` is timm's: the tag's own preprocessing (the mnist5k tags were trained
and evaluated on the 28x28 digits as they are: crop_pct 1.0, no resize), licence, paper and
origin, with `architecture` the model's registered name, so that `timm.models.save_for_hf` and
`timm.create_model("local-dir:...")` round-trip; `pretrained_cfg_overlay` entries override it.
Weights written before a module rename load through `LEGACY_KEYS` (`migrate_state_dict`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

__all__ = ["PretrainedTag", "PRETRAINED", "WEIGHTS_DIR", "tags_of", "resolve_tag", "plan", "load_weights",
           "timm_cfgs", "model_cfg", "migrate_state_dict", "LEGACY_KEYS", "PAPERS"]

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


# What each family's seed document cites (../shared/seeds): neither names a paper or an arXiv id.
PAPERS: Dict[str, Dict[str, Any]] = {
    "dhvn": dict(paper_ids="no paper", origin_url="https://github.com/JoseBerlin7/DHVN",
                 paper_name="Dynamic Hybrid Vision Network: Conv-Transformer Adaptive Routing "
                            "(J. Berlin, 2025; cited as a repository, @misc dhvn2025)"),
    "eshvision": dict(paper_ids="no paper",
                      paper_name="ESH-Vision: Spatial Entropy-Steered Hybridization for Efficient Vision "
                                 "Backbones (2026; cited with no venue, arXiv id or URL)"),
}
# the tags' weights are this repository's work, under its licence (LICENSE)
LICENSE = "mit"


def _vision(model: str, suite: str, img: int, chans: int, classes: int, norm: dict) -> PretrainedTag:
    source = f"python -m harness embedded (seed 0), work_dirs/embedded/{suite}/{model}/seed0"
    family = model.split("_")[0]
    return PretrainedTag(model, suite, dict(num_classes=classes, in_chans=chans, img_size=img, **norm), source,
                         # trained and evaluated on the images as they are: at their own size no
                         # resize runs (crop 1.0), so the interpolation only matters at another size
                         dict(input_size=(chans, img, img), num_classes=classes, crop_pct=1.0, crop_mode="center",
                              interpolation="bilinear", license=LICENSE, **PAPERS[family], **norm,
                              description=f"{model} trained on {suite} by this repository's README job",
                              notes=(f"weights: {source}; exported with python -m harness export",
                                     f"preprocessing: {img}x{img}, no resize or crop, normalised with the "
                                     f"suite's mean and std")))


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
    requested = overrides.get("pretrained_cfg")
    tag = resolve_tag(name, requested) if name else None
    # a file of one's own: the overlay's, or a whole cfg's (timm's local-dir: passes the folder)
    overlay = overrides.get("pretrained_cfg_overlay")
    own = (overlay.get("file") if isinstance(overlay, Mapping) else None) or _cfg_dict(requested).get("file")
    if not pretrained:
        return None
    if own:
        return Weights(own, {}, dict(file=own))
    if _cfg_dict(requested).get("hf_hub_id"):
        raise ValueError(f"{name or what}: weights on the Hugging Face Hub are not fetched by the zoo; download "
                         f"the folder and create the model from 'local-dir:<folder>'")
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
    if os.path.isdir(path):  # a save_for_hf folder (timm's local-dir:), safetensors first as timm does
        found = [os.path.join(path, n) for n in ("model.safetensors", "pytorch_model.bin")
                 if os.path.isfile(os.path.join(path, n))]
        if not found:
            raise FileNotFoundError(f"pretrained weights folder {path} has no model.safetensors or pytorch_model.bin")
        path = found[0]
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
    state = migrate_state_dict(state, ours)
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
    cfgs: Dict[str, Any] = {}
    for tag in tags_of(model):
        t = PRETRAINED[f"{model}.{tag}"]
        cfgs[t.name] = dict(common, **t.cfg, file=t.file)
    # the untagged cfg stays timm's default: it comes after the tags and is marked ".*".
    # Otherwise timm makes the first tag with weights the default, and its input_size (1x28x28
    # digits) would describe an untagged create_model, which builds the spec's defaults
    cfgs[f"{model}.*"] = dict(common, num_classes=spec.num_classes, input_size=cls.default_input_size(spec),
                              mean=tuple(spec.mean), std=tuple(spec.std), **UNTAGGED)
    return generate_default_cfgs(cfgs)


# an untagged model (no weights) is described with ImageNet's usual evaluation, as the harness's
# image-folder suites preprocess
UNTAGGED = dict(interpolation="bicubic", crop_pct=0.875, crop_mode="center")
# the fields that describe the built model itself (its input, classes and layers), taken from it
MODEL_FIELDS = ("input_size", "mean", "std", "num_classes", "pool_size", "first_conv", "classifier")


def _cfg_dict(cfg) -> Dict[str, Any]:
    """A pretrained_cfg argument (a tag string, a dict or timm's PretrainedCfg) as a dict of its set fields."""
    if cfg is None or isinstance(cfg, str):
        return {}
    items = cfg.items() if isinstance(cfg, Mapping) else cfg.to_dict(remove_source=False, remove_null=True).items()
    return {k: v for k, v in items if v is not None}


def model_cfg(model, name: Optional[str], requested=None, overlay: Optional[Mapping] = None,
              weights: Optional[Weights] = None) -> Dict[str, Any]:
    """timm's pretrained_cfg of a built vision model: the model's own input, classes and layers;
    the named (or loaded) tag's preprocessing, licence, paper and origin; a whole cfg passed as
    `requested` (timm's local-dir:) and the overlay over both; `architecture` the registered
    name, so save_for_hf's config.json builds the same model again."""
    cfg: Dict[str, Any] = dict(model.model_cfg())
    tag_name = requested if isinstance(requested, str) else _cfg_dict(requested).get("tag")
    if not tag_name and weights is not None:
        tag_name = weights.source.get("tag")
    tag = PRETRAINED.get(f"{name}.{tag_name}") if name and tag_name else None
    if tag is not None:
        cfg.update({k: v for k, v in tag.cfg.items() if k not in MODEL_FIELDS}, tag=tag.tag, file=tag.file)
    cfg.update(_cfg_dict(requested))
    cfg.update({k: v for k, v in (overlay or {}).items() if v is not None})
    if weights is not None:
        cfg.update(weights.source)
    if name:
        cfg["architecture"] = name
    return cfg


# State-dict keys renamed since weights were written: (pattern on the old key, replacement).
# DHVN's decoder stages called their skip-merging 1x1 conv `fuse`, which timm's
# reparameterize_model takes for a fuse() method; it is `merge` now.
LEGACY_KEYS: Tuple[Tuple[str, str], ...] = (
    (r"(^|\.)(decoder\.\d+\.)fuse\.", r"\1\2merge."),
)


def migrate_state_dict(state: Mapping[str, Any], ours) -> Dict[str, Any]:
    """`state` with legacy keys renamed to the ones `ours` (a state dict or its keys) has: only a
    key the model lacks whose renamed form it has is renamed, so current files pass unchanged.
    Works on prefixed keys too (a harness checkpoint's `net.`)."""
    have = set(ours)
    out: Dict[str, Any] = {}
    for k, v in state.items():
        if k not in have:
            for pattern, repl in LEGACY_KEYS:
                new = re.sub(pattern, repl, k)
                if new != k and new in have:
                    k = new
                    break
        out[k] = v
    return out
