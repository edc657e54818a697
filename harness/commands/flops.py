"""`python -m harness flops`: executed FLOPs on a suite's eval set, against the dense cost.

For each model, the suite's eval samples (N evenly spaced ones with --limit) go through the
network in eval batches; every batch is counted twice by `zoo.flops.flops_report`:
  * executed: hard routing (argmax, no noise), sparse execution: what really runs;
  * dense: the same weights under dense execution with every router forced to its full
    choice, no budget shift: the dense reference, every branch run for every item (a
    reference nobody would deploy, not a trained static plan).
saved = 1 - executed / dense, over the whole set. Unit: FLOPs = 2 x MACs. Images report per
sample; LMs per token (and per sequence). Static and timm models: executed = dense, saved 0.
Both attention conventions are shown, labelled: [allowed] counts the (query, key) pairs the mask
allows, [computed] the pairs the kernels multiply (`zoo.flops`, "Attention conventions").

`harness.measure.executed_flops.measure_flops` is also what `run` puts into each record's `flops` field.
"""
from __future__ import annotations

import json

from .. import options
from ..errors import HarnessError

__all__ = ["add_parser", "cmd_flops"]

def add_parser(subparsers) -> str:
    p = subparsers.add_parser(
        "flops", help="executed vs dense FLOPs (2 x MACs) per sample / token on a suite's eval set",
        description="Count the FLOPs (= 2 x MACs) each model executes with hard routing and sparse "
                    "execution, averaged over the suite's eval set, against the dense cost of the "
                    "same weights (dense execution, every router forced to its full choice). "
                    "Per sample for images, per token for LMs.")
    options.add(p, "models")
    options.add(p, "suite", required=True)
    p.add_argument("--limit", type=int, help="count N evenly spaced eval samples (default: all; eval "
                                             "sets are ordered, e.g. mnist5k by class)")
    options.add(p, "batch_size", help="eval batch size (default: the suite's)")
    options.add(p, "checkpoint", help="trained weights (one model only). Without it the model is freshly "
                                      "initialised, and a fresh zoo router sends every item to its cheapest "
                                      "choice, so only trained weights give a real routing mix")
    options.add(p, "data_root")
    options.add(p, "model_kwargs", help="model constructor overrides, as for `run`")
    options.add(p, "device")
    options.add(p, "json")
    p.set_defaults(func=cmd_flops)
    return "flops"


def cmd_flops(args, argv=()) -> int:
    import torch  # here, not at the top: --help answers without it (harness/cli.py)
    from tabulate import tabulate

    from ..loading import suite_network
    from ..measure.executed_flops import measure_flops
    from ..names import resolve_models
    from ..suites import get_suite
    from ..tasks import get_task

    suite = get_suite(args.suite)
    models = resolve_models(args.models)
    options.check_at_least_one(args, "limit", "batch_size")
    if args.checkpoint and len(models) > 1:
        raise HarnessError(f"--checkpoint holds one model's weights; the patterns matched {len(models)} models")
    device = options.resolve_device(args.device)
    results = []
    for model in models:
        loaded = suite_network(model, suite, args.checkpoint, dict(args.model_kwargs), data_root=args.data_root,
                               device=device)
        batch_size = args.batch_size or loaded.cfg.test_dataloader["batch_size"]
        with torch.no_grad():
            results.append(dict(model=model, suite=suite.name,
                                **measure_flops(loaded.net, loaded.dataset, args.limit, batch_size)))
        batch_size = results[-1]["batch_size"]
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return 0
    lm = get_task(suite.task).per == "token"
    unit = "token" if lm else "sample"
    key = "_per_token" if lm else ""
    def cells(r, c):
        tail = "" if c == "allowed" else "_" + c
        return [f"{r['executed_gflops' + key + tail] * 1e3:.4g}", f"{r['dense_gflops' + key + tail] * 1e3:.4g}",
                f"{100 * r['saved' + tail]:.1f}%"]

    conventions = ("allowed", "computed")
    rows = [[r["model"], *(x for c in conventions for x in cells(r, c)), r["samples"]] for r in results]
    headers = [h + f" [{c}]" for c in conventions
               for h in (f"executed MFLOPs/{unit}", f"dense MFLOPs/{unit}", "saved")]
    print(tabulate(rows, headers=["model", *headers, "samples" if not lm else "sequences"],
                   disable_numparse=True, colalign=("left",) + ("right",) * (len(headers) + 1)))
    print(f"\nFLOPs = 2 x MACs (1 MFLOP = 1e6 FLOPs). {suite.name} eval set, batch size {batch_size}. "
          "executed: hard routing, sparse execution; dense: same weights, dense execution, every "
          "router forced to its full choice (Router.full_choice); saved = 1 - executed / dense. "
          "Counted: matmuls, convolutions, attention, scan and delta-rule formulas; not counted: "
          "norms, activations, pooling and other elementwise work. Attention: [allowed] over the "
          "(query, key) pairs the mask allows; [computed] over the pairs the CPU kernels multiply "
          "(whole causal key blocks; every key up to each packed query block's latest position, "
          "padding rows included).")
    return 0
