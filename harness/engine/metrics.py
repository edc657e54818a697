"""Evaluation metrics (mmengine `BaseMetric`s) over the per-item results of the model wrappers.

Each metric keeps one result per sample, so mmengine's `collect_results` can drop the
padding `DefaultSampler` adds under DDP and every number is over exactly the eval set.
Nested summaries (routing per router, throughput conditions) stay on `metric.summary` for the
results record; `compute_metrics` returns flat scalars for the logs and TensorBoard.
"""
from __future__ import annotations

import os

import math
from typing import Dict, List, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

__all__ = ["ClassificationMetric", "LMMetric", "RoutingMetric", "ThroughputMetric"]


@METRICS.register_module()
class ClassificationMetric(BaseMetric):
    """top1 and top5 in percent, loss = mean cross-entropy (nats), no auxiliary terms."""
    default_prefix = ""

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append((float(s["loss"]), bool(s["top1"]), bool(s["top5"])))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        n = max(len(results), 1)
        return dict(top1=100.0 * sum(r[1] for r in results) / n, top5=100.0 * sum(r[2] for r in results) / n,
                    loss=sum(r[0] for r in results) / n)


@METRICS.register_module()
class LMMetric(BaseMetric):
    """loss (nats/token), perplexity, and bits per byte for byte-level tokens, over the scored
    tokens (targets other than the ignore index: every token of a text, the queries of MQAR).

    bytes_per_token converts: bpb = loss / ln 2 / bytes_per_token (1 for byte tokens).
    """
    default_prefix = ""

    def __init__(self, bytes_per_token: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.bytes_per_token = bytes_per_token

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append((float(s["nll_sum"]), int(s["scored"])))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        tokens = max(sum(r[1] for r in results), 1)
        loss = sum(r[0] for r in results) / tokens
        return dict(loss=loss, perplexity=math.exp(min(loss, 700.0)),
                    bits_per_byte=loss / math.log(2.0) / self.bytes_per_token)


@METRICS.register_module()
class RoutingMetric(BaseMetric):
    """Per router, over the eval set: share of items that took each choice (the routes actually
    taken at eval), entropy of that mix (nats) and the Switch load balance N * sum_i f_i * P_i.
    Empty for a static model."""
    default_prefix = "routing"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.summary: Dict[str, dict] = {}

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append(s["routing"])

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        self.summary, flat = {}, {}
        if not results:
            return flat
        for layer in results[0]:
            first = results[0][layer]
            counts = torch.stack([r[layer]["counts"] for r in results]).double().sum(dim=0)
            prob_sums = torch.stack([r[layer]["prob_sums"] for r in results]).double().sum(dim=0)
            total = float(counts.sum())
            f, p = counts / max(total, 1.0), prob_sums / max(total, 1.0)
            nz = f[f > 0]
            share = {c: float(v) for c, v in zip(first["choices"], f)}
            summary = dict(granularity=first["granularity"], choices=list(first["choices"]), share=share,
                           entropy=float(-(nz * nz.log()).sum()), load_balance=float(len(f) * (f * p).sum()))
            self.summary[layer] = summary
            flat.update({f"{layer}/share/{c}": v for c, v in share.items()})
            flat[f"{layer}/entropy"] = summary["entropy"]
            flat[f"{layer}/load_balance"] = summary["load_balance"]
        return flat


@METRICS.register_module()
class ThroughputMetric(BaseMetric):
    """Model forward throughput at eval (samples/s, or tokens/s with unit='tokens'),
    from the forward time the wrapper measured, with the conditions it ran under."""
    default_prefix = "throughput"

    def __init__(self, unit: str = "samples", batch_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        if unit not in ("samples", "tokens"):
            raise ValueError(f"unit must be 'samples' or 'tokens', got {unit!r}")
        self.unit, self.batch_size = unit, batch_size
        self.summary: dict = {}
        self._batches = 0

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        self._batches += 1
        for s in data_samples:
            n = int(s["tokens"]) if self.unit == "tokens" else 1
            # the first batch pays one-time costs (allocator, kernel selection): not steady state
            self.results.append((float(s["seconds"]), n, s["device"], s["dtype"], self._batches == 1))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        self._batches = 0
        steady = [r for r in results if not r[4]] or results
        seconds = sum(r[0] for r in steady)
        rate = sum(r[1] for r in steady) / seconds if seconds > 0 else float("nan")
        key = f"{self.unit}_per_s"
        # the timings mean little without the machine's load beside them (1-minute average)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.summary = {key: rate, "batch_size": self.batch_size, "threads": torch.get_num_threads(),
                        "load_avg_1m": load, "cpu_count": os.cpu_count(),
                        "device": results[0][2] if results else None,
                        "dtype": results[0][3] if results else None}
        return {key: rate}
