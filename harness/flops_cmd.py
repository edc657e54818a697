"""`python -m harness flops`: executed FLOPs on a suite's eval set, against the dense cost.

For each model, the suite's eval samples (N evenly spaced ones with --limit) go through the
network in eval batches; every batch is counted twice by `zoo.flops.flops_report`:
  * executed: hard routing (argmax, no noise), sparse execution: what really runs;
  * dense: the same weights under dense execution with every router forced to its full
    choice (the static always-both hybrid cost).
saved = 1 - executed / dense, over the whole set. Unit: FLOPs = 2 x MACs. Images report per
sample; LMs per token (and per sequence). Static and timm models: executed = dense, saved 0.

`measure_flops` is also what `run` puts into each record's `flops` field.
"""
from __future__ import annotations

import json
from typing import Optional

import torch

from .errors import HarnessError

__all__ = ["add_parser", "cmd_flops", "measure_flops", "sample_indices", "RUN_FLOPS_SAMPLES",
           "RUN_FLOPS_SEQUENCES"]

# `run` counts this many evenly spaced eval images / sequences: enough to average the routing
# mix (a quarter of mnist5k's eval digits; 16 x 256 = 4,096 tokens on pydocs), cheap next to
# the evaluation itself
RUN_FLOPS_SAMPLES = 256
RUN_FLOPS_SEQUENCES = 16


def sample_indices(size: int, limit: Optional[int]) -> list:
    """`limit` evenly spaced indices of a `size`-item eval set (all of them when None).

    Evenly spaced, not the first N: eval sets are ordered (mnist5k's test split is sorted by
    class, pydocs by topic), and routing, hence executed FLOPs, depends on the content."""
    n = size if limit is None else min(int(limit), size)
    return [i * size // n for i in range(n)]


def measure_flops(net: torch.nn.Module, dataset, limit: Optional[int] = None, batch_size: int = 64) -> dict:
    """Executed and dense FLOPs of `net` averaged over `limit` evenly spaced items of `dataset`
    (all of them when None), in batches of `batch_size`; the record's `flops` field."""
    from torch.utils.data import default_collate

    import zoo.flops

    index = sample_indices(len(dataset), limit)
    n = len(index)
    if n < 1:
        raise HarnessError("no eval samples to count FLOPs on")
    batch_size = min(int(batch_size), n)
    device = next(net.parameters()).device
    executed = dense = tokens = 0
    per = "sample"
    for start in range(0, n, batch_size):
        batch = default_collate([dataset[i] for i in index[start:start + batch_size]])
        x = batch["inputs"].to(device)
        report = zoo.flops.flops_report(net, x)
        executed += report["executed"]
        dense += report["dense"]
        per = report["per"]
        tokens += report["items"] if per == "token" else 0
    out = dict(
        unit="GFLOPs (2 x MACs)",
        executed_gflops=executed / n / 1e9,       # per sample: one image, or one sequence
        dense_gflops=dense / n / 1e9,
        saved=(1.0 - executed / dense) if dense else 0.0,
        per_sample="sequence" if per == "token" else "image",
        samples=n, batch_size=int(batch_size),
        execution="sparse, hard routing", dense_reference="dense execution, full policy",
        counter="torch.utils.flop_counter.FlopCounterMode + zoo op formulas",
    )
    if per == "token":
        out.update(executed_gflops_per_token=executed / tokens / 1e9,
                   dense_gflops_per_token=dense / tokens / 1e9, tokens_per_sample=tokens / n)
    return out


def add_parser(subparsers) -> str:
    from .cli import _dict_action

    p = subparsers.add_parser(
        "flops", help="executed vs dense FLOPs (2 x MACs) per sample / token on a suite's eval set",
        description="Count the FLOPs (= 2 x MACs) each model executes with hard routing and sparse "
                    "execution, averaged over the suite's eval set, against the dense cost of the "
                    "same weights (dense execution, every router forced to its full choice). "
                    "Per sample for images, per token for LMs.")
    p.add_argument("--models", nargs="+", required=True, metavar="PAT",
                   help="zoo names or fnmatch patterns (quote them), or timm:NAME")
    p.add_argument("--suite", required=True, help="benchmark suite (see `python -m harness list`)")
    p.add_argument("--limit", type=int, help="count N evenly spaced eval samples (default: all; eval "
                                             "sets are ordered, e.g. mnist5k by class)")
    p.add_argument("--batch-size", type=int, help="eval batch size (default: the suite's)")
    p.add_argument("--checkpoint", help="trained weights (one model only). Without it the model is freshly "
                                        "initialised, and a fresh zoo router sends every item to its first "
                                        "choice, so only trained weights give a real routing mix")
    p.add_argument("--data-root", help="dataset location for suites that need one")
    p.add_argument("--model-kwargs", nargs="+", action=_dict_action(), default={}, metavar="KEY=VALUE",
                   help="model constructor overrides, as for `run`")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_flops)
    return "flops"


def _check_args(args, models) -> None:
    for flag in ("limit", "batch_size"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise HarnessError(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    if args.checkpoint and len(models) > 1:
        raise HarnessError(f"--checkpoint holds one model's weights; the patterns matched {len(models)} models")


def _network(cfg, model: str, checkpoint: Optional[str]) -> torch.nn.Module:
    from mmengine.registry import MODELS

    from . import checkpoint as ckpt_mod
    from . import wrappers as _models  # noqa: F401  (registers the wrappers)

    if checkpoint:
        ckpt_mod.install_safe_globals()
        ckpt_mod.load_checkpoint_file(checkpoint)   # corrupt or foreign: fail before building
    _models.check_buildable(model, cfg.model["arch_kwargs"])
    wrapper = MODELS.build(dict(cfg.model))
    if checkpoint:
        state = ckpt_mod.check_checkpoint(checkpoint, wrapper, arch=model)["state_dict"]
        wrapper.load_state_dict(state)
    return wrapper.net.eval()


def cmd_flops(args, argv=()) -> int:
    from mmengine.registry import DATASETS
    from tabulate import tabulate

    from .run import RunOptions, build_config, check_tasks, resolve_models
    from .suites import get_suite

    suite = get_suite(args.suite)
    models = resolve_models(args.models)
    check_tasks(models, suite)
    _check_args(args, models)
    if suite.needs_root and not args.data_root:
        raise HarnessError(f"suite {suite.name} needs --data-root: {suite.layout}")
    opts = RunOptions(data_root=args.data_root, model_kwargs=dict(args.model_kwargs), device="cpu")
    results = []
    dataset = None
    for model in models:
        cfg = build_config(suite, model, 0, opts, "cpu")
        if dataset is None:
            dataset = DATASETS.build(dict(cfg.test_dataloader["dataset"]))
            if len(dataset) == 0:
                raise HarnessError(f"suite {suite.name}: the eval split is empty")
        if cfg.model["arch_kwargs"].get("num_classes", 0) is None:
            cfg.model["arch_kwargs"]["num_classes"] = getattr(dataset, "num_classes", None)
        net = _network(cfg, model, args.checkpoint)
        batch_size = args.batch_size or cfg.test_dataloader["batch_size"]
        with torch.no_grad():
            results.append(dict(model=model, suite=suite.name, **measure_flops(net, dataset, args.limit, batch_size)))
        batch_size = results[-1]["batch_size"]
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return 0
    lm = suite.task == "causal-lm"
    unit = "token" if lm else "sample"
    key = "_per_token" if lm else ""
    rows = [[r["model"], f"{r['executed_gflops' + key] * 1e3:.4g}", f"{r['dense_gflops' + key] * 1e3:.4g}",
             f"{100 * r['saved']:.1f}%", r["samples"]] for r in results]
    print(tabulate(rows, headers=["model", f"executed MFLOPs/{unit}", f"dense MFLOPs/{unit}", "saved",
                                  "samples" if not lm else "sequences"],
                   disable_numparse=True, colalign=("left", "right", "right", "right", "right")))
    print(f"\nFLOPs = 2 x MACs (1 MFLOP = 1e6 FLOPs). {suite.name} eval set, batch size {batch_size}. "
          "executed: hard routing, sparse execution; dense: same weights, dense execution, every "
          "router forced to its full choice (zoo.flops.FULL_CHOICES); saved = 1 - executed / dense. "
          "Counted: matmuls, convolutions, attention, scan and delta-rule formulas; not counted: "
          "norms, activations, pooling and other elementwise work.")
    return 0
