"""`python -m harness visualize`: routing pictures of a trained checkpoint on a suite's eval split.

    python -m harness visualize --model dhvn_nano --suite mnist5k \\
        --checkpoint work_dirs/embedded/mnist5k/dhvn_nano/seed0/iter_400.pth [--n 16] [--out DIR]
    python -m harness visualize --model dhvn_nano.mnist5k   # a shipped tag: its weights, on its suite
    python -m harness visualize --readme      # one picture of each kind into docs/figures/

The model is rebuilt exactly as `run` builds it (the suite's config, then --model-kwargs and
--cfg-options), the checkpoint is loaded with the harness's safe loader (weights_only=True)
and must fit that model key for key. Every picture is a PNG with a JSON of the numbers it
draws beside it (`harness.viz.common.save_picture`); the numbers come from
`zoo.routing.trace` and the models' documented outputs. One module per family in harness/viz; a
family without one gets a one-line "no pictures for the <family> family". The README's pictures
are each family's `demo` (docs/DESIGN.md, "Families").
"""
from __future__ import annotations

import argparse
import importlib
import os
from typing import List, Optional

from .. import options
from ..errors import HarnessError

__all__ = ["add_parser", "cmd_visualize", "load_routed", "visualize", "readme_figures", "families",
           "readme_models", "readme_compare"]


def readme_models() -> list:
    """[(suite, model, images or texts shown)] of the README pictures: each family's `demo`
    (docs/DESIGN.md, "Families"), in display order."""
    import zoo
    demos = [zoo.get_family(name).demo for name in zoo.list_families()]
    return [(d.suite, d.model, d.n) for d in demos if d]


def readme_compare() -> list:
    """[(suite, models)] of the README's comparison figures: the families' `demo.compare` models,
    one figure per suite, in display order."""
    import zoo
    out: dict = {}
    for name in zoo.list_families():
        demo = zoo.get_family(name).demo
        if demo and demo.compare:
            out.setdefault(demo.suite, []).extend(demo.compare)
    return [(suite, tuple(models)) for suite, models in out.items()]


def add_parser(subparsers) -> str:
    p = subparsers.add_parser(
        "visualize", help="routing pictures (PNG + JSON) of a checkpoint on a suite's eval split",
        description="Draw the routing of a trained routed zoo model: DHVN gate heat-map and per-sample "
                    "routes; ESH-Vision alpha / entropy / ponder maps and alpha histograms; Exp11 token "
                    "routes, per-layer shares and share vs position. Each PNG has a JSON of its numbers.",
        epilog="Example:\n  python -m harness visualize --model dhvn_nano --suite mnist5k "
               "--checkpoint work_dirs/mnist5k/dhvn_nano/seed0/iter_400.pth --n 16\n"
               "  python -m harness visualize --readme   # README pictures from work_dirs/embedded",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add(p, "model", help="one routed zoo model (dhvn_*, eshvision_*, exp11_dynamic_*), or a shipped tag "
                                 "(dhvn_nano.mnist5k: its weights, no --checkpoint)")
    options.add(p, "checkpoint", help="an mmengine checkpoint the harness wrote (work_dir/iter_N.pth), "
                                      "or a work dir (its last checkpoint)")
    options.add(p, "suite", help="suite whose eval split is drawn (see `python -m harness list`; "
                                 "default for a shipped tag: its own)")
    p.add_argument("--n", type=int, default=8,
                   help="images (vision) or eval texts (LM, at most 4) drawn one by one (default 8)")
    p.add_argument("--limit", type=int, default=0,
                   help="eval items the statistics cover (default 0: the whole eval split)")
    p.add_argument("--out", help="output folder (default: visualizations/<suite>/<model>; "
                                 "with --readme: docs/figures)")
    options.add(p, "data_root")
    options.add(p, "model_kwargs", help="the --model-kwargs the checkpoint was trained with")
    options.add(p, "cfg_options", help="config overrides, e.g. test_dataloader.dataset.limit=200")
    options.add(p, "device")
    p.add_argument("--readme", action="store_true",
                   help="draw one picture of each kind for the README from --work-dirs-root")
    p.add_argument("--work-dirs-root", default=os.path.join("work_dirs", "embedded"),
                   help="with --readme: where the embedded job's work dirs are (<root>/<suite>/<model>/seed0)")
    p.set_defaults(func=cmd_visualize)
    return "visualize"


def cmd_visualize(args, argv=()) -> int:
    if args.readme:
        pictures = readme_figures(args.work_dirs_root, args.out or os.path.join("docs", "figures"))
    else:
        # a shipped tag brings its weights and its suite (harness/names.py); a name with a dot can
        # only be a tag, so an unknown one is named with its closest tags first
        tagged = bool(args.model and "." in args.model and _tag_suite(args.model))
        needed = ("model",) if tagged else ("model", "checkpoint", "suite")
        missing = [f"--{k}" for k in needed if not getattr(args, k)]
        if missing:
            raise HarnessError(f"visualize needs {', '.join(missing)} (or --readme, or a shipped tag as --model)")
        suite = args.suite or _tag_suite(args.model)
        pictures = visualize(args.model, args.checkpoint, suite, n=args.n, out=args.out,
                             limit=args.limit, model_kwargs=dict(args.model_kwargs),
                             cfg_options=dict(args.cfg_options), data_root=args.data_root,
                             device=args.device)
    for pic in pictures:
        print(f"harness: wrote {pic['png']} ({pic['size'][0]}x{pic['size'][1]}) and {os.path.basename(pic['json'])}")
    return 0


def _tag_suite(model: str):
    from ..names import resolve_models, tag_suite
    resolve_models([model])  # no such model or tag: one line with the closest names
    return tag_suite(model)


def load_routed(model: str, checkpoint: Optional[str], suite_name: str, model_kwargs: Optional[dict] = None,
                cfg_options: Optional[dict] = None, data_root: Optional[str] = None, device="cpu"):
    """(network in eval mode, eval dataset, family, resolved config) for one routed zoo model.

    Every user mistake (pattern, unknown or timm or static model, wrong suite, bad checkpoint)
    is a one-line HarnessError before any picture is drawn."""
    import zoo

    from ..loading import suite_network
    from ..names import TIMM_PREFIX, base_model

    if any(ch in model for ch in "*?["):
        raise HarnessError(f"--model takes one model name, not a pattern ({model!r})")
    if model.startswith(TIMM_PREFIX):
        raise HarnessError(f"{model} is a timm model and has no routers; visualize draws routed zoo models "
                           f"({', '.join(f + '_*' for f in families())})")
    if zoo.is_model(base_model(model)):
        info = zoo.model_info(base_model(model))
        if info["family"] not in families():
            raise HarnessError(f"no pictures for the {info['family']} family ({model}): harness/viz draws "
                               f"{', '.join(families())}")
        if info["routing"] == "static":
            raise HarnessError(f"{model} is a static model (no routers): there is no routing to draw; "
                               f"use its routed form")
    loaded = suite_network(model, suite_name, checkpoint, model_kwargs, cfg_options, data_root, str(device))
    if not zoo.routing.routers(loaded.net):  # a --model-kwargs override can make a routed variant static
        raise HarnessError(f"{model} has no routers with these settings: there is no routing to draw")
    return loaded.net, loaded.dataset, zoo.model_info(base_model(model))["family"], loaded.cfg


def families() -> list:
    """The families with pictures: one module of `harness.viz` each, named after the family."""
    import pkgutil

    from .. import viz
    return sorted(m.name for m in pkgutil.iter_modules(viz.__path__) if m.name not in ("common", "compare_plots"))


def _classes(dataset) -> List[str]:
    classes = getattr(dataset, "metainfo", {}).get("classes")
    if classes:
        return [str(c) for c in classes]
    n = getattr(dataset, "num_classes", None) or 0
    return [str(i) for i in range(n)]


def visualize(model: str, checkpoint: Optional[str], suite: str, n: int = 8, out: Optional[str] = None,
              limit: int = 0, model_kwargs: Optional[dict] = None, cfg_options: Optional[dict] = None,
              data_root: Optional[str] = None, device: str = "auto") -> list:
    """Draw every picture of the model's family; returns [{name, png, json, size}, ...]."""
    from ..engine.checkpoint import latest_checkpoint  # here: --help answers without mmengine
    if n < 1:
        raise HarnessError(f"--n must be >= 1, got {n}")
    if limit < 0:
        raise HarnessError(f"--limit must be >= 0, got {limit}")
    dev = options.resolve_device(device)
    out = out or os.path.join("visualizations", suite, options.work_dir_name(model))
    options.check_writable(out, "output folder", done="nothing was drawn", folder_only=True)
    if checkpoint and os.path.isdir(checkpoint):  # a work dir: the checkpoint mmengine saved last
        checkpoint = latest_checkpoint(checkpoint)
    net, dataset, family, cfg = load_routed(model, checkpoint, suite, model_kwargs, cfg_options,
                                            data_root, dev)
    from ..names import tag_provenance
    meta = dict(model=model, suite=suite, checkpoint=checkpoint, split="test",
                routing="argmax (eval), sparse execution", **tag_provenance(model))
    batch_size = int(cfg.test_dataloader.get("batch_size") or 64)
    pictures = importlib.import_module(f"harness.viz.{family}")
    return pictures.draw_all(net, dataset, _classes(dataset), n, out, meta, batch_size, limit, dev)


# ----------------------------------------------------------------------------- README pictures


def readme_figures(root: str = os.path.join("work_dirs", "embedded"),
                   out: str = os.path.join("docs", "figures"), seed: int = 0) -> list:
    """One picture of each kind for the README, from the embedded job's work dirs (seed 0):
    out/<model>/... for visualize, out/compare_<suite>/... for compare."""
    from ..engine.checkpoint import latest_checkpoint
    from .compare import compare
    options.check_writable(out, "output folder", done="nothing was drawn", folder_only=True)
    pictures = []
    for suite, model, n in readme_models():
        work = os.path.join(root, suite, model, f"seed{seed}")
        pictures += visualize(model, latest_checkpoint(work), suite, n=n, out=os.path.join(out, model))
    for suite, models in readme_compare():
        pictures += compare(list(models), suite, work_dirs=[os.path.join(root, suite)],
                            out=os.path.join(out, f"compare_{suite}"))["pictures"]
    return pictures
