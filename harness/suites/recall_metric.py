"""RecallMetric: accuracy at the scored positions of an LM suite (MQAR's queries), and where a
routed model spends its expensive reads.

It reads what `ZooLM` returns per sequence in predict mode: `hits` and `scored` (argmax hits
among, and number of, targets other than the ignore index), `tokens`, `routing` (per router, choice
counts over all positions) and `scored_routes` (per router deciding per token, choice counts at
the scored positions). The loss over the scored positions is `LMMetric`'s.

Routing precision (docs/DESIGN.md, "Embedded suites"): of the tokens that read `choice` (softmax
attention in Exp11) in the routed layers, the share at query positions, beside `query_share`,
the share of positions that are queries: a router blind to the queries reads at that base rate,
one that finds them all and reads nothing else reaches 1. `routing_recall` is the share of the
query positions that read `choice`. Both pool the routed layers; per layer they are logged under
`routing_precision/<layer>` and `routing_recall/<layer>` (not part of a run's record).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

__all__ = ["RecallMetric"]


@METRICS.register_module()
class RecallMetric(BaseMetric):
    """query_accuracy in [0, 1] (as Zoology reports it), query_share, and, for a model with
    per-token routers that have `choice`, routing_precision and routing_recall."""
    default_prefix = ""

    def __init__(self, choice: str = "softmax", **kwargs):
        super().__init__(**kwargs)
        self.choice = choice

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            reads = {}
            for layer, at_scored in s["scored_routes"].items():
                choices = list(s["routing"][layer]["choices"])
                if self.choice in choices:
                    c = choices.index(self.choice)
                    reads[layer] = (float(s["routing"][layer]["counts"][c]), float(at_scored[c]))
            self.results.append((int(s["hits"]), int(s["scored"]), int(s["tokens"]), reads))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        scored = sum(r[1] for r in results)
        out = dict(query_accuracy=sum(r[0] for r in results) / max(scored, 1),
                   query_share=scored / max(sum(r[2] for r in results), 1))
        layers = sorted({layer for r in results for layer in r[3]})
        pooled = [0.0, 0.0]  # reads, reads at query positions
        for layer in layers:
            reads = sum(r[3][layer][0] for r in results if layer in r[3])
            at_queries = sum(r[3][layer][1] for r in results if layer in r[3])
            pooled[0], pooled[1] = pooled[0] + reads, pooled[1] + at_queries
            out[f"routing_precision/{layer}"] = at_queries / reads if reads else float("nan")
            out[f"routing_recall/{layer}"] = at_queries / max(scored, 1)
        if layers:
            out["routing_precision"] = pooled[1] / pooled[0] if pooled[0] else float("nan")
            out["routing_recall"] = pooled[1] / max(scored * len(layers), 1)
        return out
