"""The leaderboard's twin of each harness task (`harness.tasks`, docs/DESIGN.md, "Tasks"): which
metric columns a suite table shows, which way they rank, the throughput and FLOPs keys it reads
and the quality metric static plans are held to. Keyed by the same names as `harness.tasks.TASKS`
(tests/harness/test_tasks.py holds the contract)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

__all__ = ["TaskSpec", "TASK_SPECS"]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metrics: Tuple[str, ...]      # metric columns shown, primary first
    higher_is_better: bool        # direction of the primary metric
    throughput_key: str           # key in the record's `throughput`
    flops_key: str = "executed_gflops"   # key in the record's `flops`: per image, or per token
    quality: str = ""             # the metric static plans are held to (same direction as the primary)
    quality_name: str = ""
    note: str = ""                # what the metric columns mean, under the table


TASK_SPECS = {
    "image-classification": TaskSpec("image-classification", ("top1",), True, "samples_per_s",
                                     quality="top1", quality_name="top-1"),
    # LM records hold per-sequence and per-token FLOPs; the board shows per token, so models
    # evaluated at different sequence lengths stay comparable
    "causal-lm": TaskSpec("causal-lm", ("perplexity", "bits_per_byte"), False, "tokens_per_s",
                          "executed_gflops_per_token", quality="bits_per_byte", quality_name="bits/byte"),
    # scored at the queries only (MQAR), where bits/byte would be bits per query token: query accuracy,
    # and where a routed model's softmax reads fall (docs/DESIGN.md, "Embedded suites")
    "associative-recall": TaskSpec(
        "associative-recall", ("query_accuracy", "routing_precision", "routing_recall", "query_share"), True,
        "tokens_per_s", "executed_gflops_per_token", quality="query_accuracy", quality_name="query accuracy",
        note="Query accuracy: argmax hits at the query positions, the only scored ones. Routing precision: of the "
             "tokens that read softmax in the routed layers, the share at query positions (a router blind to the "
             "queries reads at the query share, one that reads exactly them reaches 1); routing recall: the share "
             "of query positions that read softmax. Static models have neither."),
}
