"""One `Task` object per task the harness runs: what differs between classifying images and
modelling text lives here, not in comparisons of task strings across the harness.

A task owns its mmengine wrapper and metric, the synthetic inputs bench and flops time models on,
its unit, its default bench suite, the sizes of its budget-calibration and FLOP samples, and the
one-line summary of a record. The leaderboard's display twin (`leaderboard.aggregate.TASK_SPECS`)
is keyed by the same names; `tests/harness/test_tasks.py` holds the two to one contract.
A new task is a subclass here, its wrapper and metric, a suite, and its TaskSpec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = ["Task", "ImageClassification", "CausalLM", "TASKS", "IMAGE_TASK", "LM_TASK", "IGNORE_INDEX", "get_task"]

IMAGE_TASK = "image-classification"
LM_TASK = "causal-lm"
# an LM target the loss and the metrics skip (F.cross_entropy's default ignore_index): MQAR scores
# only its query positions (docs/DESIGN.md, "Embedded suites")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Task:
    name: str
    wrapper: str              # the mmengine model type in a suite config
    metric: str               # the task metric's type in a suite config's test_evaluator
    unit: str                 # what throughput counts: "samples" or "tokens"
    per: str                  # what FLOPs are reported per: "sample" or "token"
    bench_suite: str          # the suite bench and flops use when none is named
    size_option: str          # the bench option that sizes the input: "img_size" or "seq_len"
    calibration_items: int    # items of the training split the budget knob is fitted on
    flops_items: int          # evenly spaced eval items `run` counts FLOPs on

    def inputs(self, suite, batch: int, size: Optional[int], arch_kwargs: dict):
        """(inputs, targets, description) bench times a model on."""
        raise NotImplementedError

    def items(self, inputs) -> int:
        """How many `unit`s one step over `inputs` processes."""
        raise NotImplementedError

    def summary(self, metrics: dict) -> str:
        """The record's main metrics, as the run's summary line shows them."""
        raise NotImplementedError


class ImageClassification(Task):
    def inputs(self, suite, batch, size, arch_kwargs):
        """The embedded suite's first test digits (evenly spaced), repeated to `batch`; random
        images for other suites."""
        import torch
        import torch.nn.functional as F
        chans = int(arch_kwargs.get("in_chans", 3))
        side = size or int(arch_kwargs.get("img_size", 224))
        classes = int(arch_kwargs.get("num_classes") or 1000)
        if suite.name == "mnist5k":
            from .suites.mnist5k import Mnist5k
            ds = Mnist5k("test", limit=min(batch, 1000))
            idx = torch.arange(batch) % len(ds)
            x, y = ds.images[idx], ds.labels[idx]
            desc = f"mnist5k test digits, {batch}x{chans}x{side}x{side}"
            if side != x.shape[-1]:
                x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
                desc += " (resized)"
            return x.contiguous(), y, desc
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, chans, side, side, generator=gen)
        y = torch.randint(0, classes, (batch,), generator=gen)
        return x, y, f"random images, {batch}x{chans}x{side}x{side}"

    def items(self, inputs) -> int:
        return int(inputs.shape[0])

    def summary(self, metrics: dict) -> str:
        return f"top1 {metrics['top1']:.2f}% top5 {metrics['top5']:.2f}% loss {metrics['loss']:.4f}"


class CausalLM(Task):
    def inputs(self, suite, batch, size, arch_kwargs):
        """Consecutive byte windows of the pydocs test text; random tokens for other suites."""
        import torch
        T = size or int(arch_kwargs.get("max_seq_len", 256))
        vocab = int(arch_kwargs.get("vocab_size", 256))
        if suite.name == "pydocs":
            from .suites.pydocs import byte_windows, corpus
            windows = byte_windows(corpus()["data"]["test"], T)
            w = windows[torch.arange(batch) % len(windows)]
            return w[:, :-1].contiguous(), w[:, 1:].contiguous(), f"pydocs test text, {batch}x{T} byte tokens"
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (batch, T + 1), generator=gen)
        return ids[:, :-1].contiguous(), ids[:, 1:].contiguous(), f"random tokens, {batch}x{T}, vocab {vocab}"

    def items(self, inputs) -> int:
        return int(inputs.numel())

    def summary(self, metrics: dict) -> str:
        return (f"loss {metrics['loss']:.4f} ppl {metrics['perplexity']:.3f} "
                f"bpb {metrics['bits_per_byte']:.4f}")


# calibration and FLOP samples: 256 images, or 16 sequences (16 x 256 = 4,096 tokens on pydocs):
# enough to average the routing mix, cheap next to the evaluation itself
TASKS: Dict[str, Task] = {t.name: t for t in (
    ImageClassification(IMAGE_TASK, "ZooClassifier", "ClassificationMetric", "samples", "sample", "mnist5k",
                        "img_size", calibration_items=256, flops_items=256),
    CausalLM(LM_TASK, "ZooLM", "LMMetric", "tokens", "token", "pydocs", "seq_len",
             calibration_items=16, flops_items=16),
)}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; the harness runs {', '.join(sorted(TASKS))}") from None


def size_options() -> Tuple[str, ...]:
    return tuple(sorted({t.size_option for t in TASKS.values()}))
