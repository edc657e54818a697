"""One `Task` object per task the harness runs: what differs between classifying images,
modelling text and recalling associations lives here, not in comparisons of task strings across
the harness.

A task owns its mmengine wrapper and metrics, the models it accepts (by the task their zoo class
declares), the inputs bench times models on, its unit, its default bench suite, the sizes of its
budget-calibration and FLOP samples, and the one-line summary of a record. The leaderboard's
display twin (`leaderboard.task_specs.TASK_SPECS`) is keyed by the same names;
`tests/harness/test_tasks.py` holds the two to one contract. A new task is a subclass here, its
wrapper and metric, a suite, and its TaskSpec (docs/DESIGN.md, "Tasks").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = ["Task", "ImageClassification", "CausalLM", "AssociativeRecall", "TASKS", "IMAGE_TASK", "LM_TASK",
           "RECALL_TASK", "IGNORE_INDEX", "get_task", "suite_test_items"]

IMAGE_TASK = "image-classification"
LM_TASK = "causal-lm"
RECALL_TASK = "associative-recall"
# an LM target the loss and the metrics skip (F.cross_entropy's default ignore_index): MQAR scores
# only its query positions (docs/DESIGN.md, "Embedded suites")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Task:
    name: str
    model_task: str           # the `task` a zoo model class declares to run here (timm peers: images)
    wrapper: str              # the mmengine model type in a suite config
    metrics: Tuple[str, ...]  # metric types a suite config's test_evaluator holds, the task's own first
    unit: str                 # what throughput counts: "samples" or "tokens"
    per: str                  # what FLOPs are reported per: "sample" or "token"
    bench_suite: str          # the suite bench and flops use when none is named
    size_option: str          # the bench option that sizes the input: "img_size" or "seq_len"
    calibration_items: int    # items of the training split the budget knob is fitted on
    flops_items: int          # evenly spaced eval items `run` counts FLOPs on

    def inputs(self, suite, batch: int, size: Optional[int], arch_kwargs: dict):
        """(inputs, targets, description) bench times a model on: the suite's test items
        (`suite_test_items`), or random ones for a suite that reads --data-root."""
        raise NotImplementedError

    def items(self, inputs) -> int:
        """How many `unit`s one step over `inputs` processes."""
        raise NotImplementedError

    def summary(self, metrics: dict) -> str:
        """The record's main metrics, as the run's summary line shows them."""
        raise NotImplementedError


def suite_test_items(suite, n: int, max_seq_len: Optional[int] = None):
    """(inputs, targets, note) of `n` items of the suite's test split as its config builds it (with
    the dataset's `limit`; the split repeated when it is shorter), or None for a suite that reads
    --data-root: the embedded and generated suites are timed on their own data, since routing,
    hence the time, depends on it. At another `max_seq_len` the dataset's `at_length` (MQAR keeps
    its share of pairs) or its `max_seq_len` alone gives the arguments; `note` says what changed."""
    if suite.needs_root:
        return None
    from mmengine.config import Config
    from mmengine.registry import DATASETS
    from torch.utils.data import default_collate

    # Config.fromfile imports the config's custom_imports, the harness: the datasets are registered
    spec, note = Config.fromfile(suite.config).test_dataloader["dataset"].to_dict(), ""
    if max_seq_len is not None and max_seq_len != spec.get("max_seq_len"):
        at_length = getattr(DATASETS.get(spec["type"]), "at_length", None)
        spec, note = at_length(spec, max_seq_len) if at_length else (dict(spec, max_seq_len=max_seq_len), "")
    dataset = DATASETS.build(dict(spec, limit=n))
    batch = default_collate([dataset[i % len(dataset)] for i in range(n)])
    return batch["inputs"].contiguous(), batch["data_samples"].contiguous(), note


class ImageClassification(Task):
    def inputs(self, suite, batch, size, arch_kwargs):
        import torch
        import torch.nn.functional as F
        side = size or int(arch_kwargs.get("img_size", 224))
        real = suite_test_items(suite, batch)
        if real is not None:
            x, y, _ = real
            desc = f"{suite.name} test images, {batch}x{x.shape[1]}x{side}x{side}"
            if side != x.shape[-1]:
                x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False).contiguous()
                desc += " (resized)"
            return x, y, desc
        chans, classes = int(arch_kwargs.get("in_chans", 3)), int(arch_kwargs.get("num_classes") or 1000)
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
        import torch
        T = size or int(arch_kwargs.get("max_seq_len", 256))
        real = suite_test_items(suite, batch, T)
        if real is not None:
            ids, targets, note = real
            return ids, targets, f"{suite.name} test sequences, {batch}x{T} tokens{note}"
        vocab = int(arch_kwargs.get("vocab_size", 256))
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (batch, T + 1), generator=gen)
        return ids[:, :-1].contiguous(), ids[:, 1:].contiguous(), f"random tokens, {batch}x{T}, vocab {vocab}"

    def items(self, inputs) -> int:
        return int(inputs.numel())

    def summary(self, metrics: dict) -> str:
        return (f"loss {metrics['loss']:.4f} ppl {metrics['perplexity']:.3f} "
                f"bpb {metrics['bits_per_byte']:.4f}")


class AssociativeRecall(CausalLM):
    """An LM scored at its query positions only (MQAR): query accuracy is the measure, and for a
    routed model where its softmax reads fall (docs/DESIGN.md, "Embedded suites")."""

    def summary(self, metrics: dict) -> str:
        line = f"query accuracy {metrics['query_accuracy']:.4f} loss {metrics['loss']:.4f}"
        precision = metrics.get("routing_precision")
        if isinstance(precision, (int, float)):
            line += f" routing precision {precision:.3f} (query share {metrics['query_share']:.3f})"
        return line


# calibration and FLOP samples: 256 images, or 16 sequences (16 x 256 = 4,096 tokens on pydocs):
# enough to average the routing mix, cheap next to the evaluation itself
_LM_SIZES = dict(unit="tokens", per="token", size_option="seq_len", calibration_items=16, flops_items=16)
TASKS: Dict[str, Task] = {t.name: t for t in (
    ImageClassification(IMAGE_TASK, IMAGE_TASK, "ZooClassifier", ("ClassificationMetric",), "samples", "sample",
                        "mnist5k", "img_size", calibration_items=256, flops_items=256),
    CausalLM(LM_TASK, LM_TASK, "ZooLM", ("LMMetric",), bench_suite="pydocs", **_LM_SIZES),
    # the loss over the queries is LMMetric's; RecallMetric adds accuracy and routing precision
    AssociativeRecall(RECALL_TASK, LM_TASK, "ZooLM", ("RecallMetric", "LMMetric"), bench_suite="mqar256",
                      **_LM_SIZES),
)}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; the harness runs {', '.join(sorted(TASKS))}") from None


def size_options() -> Tuple[str, ...]:
    return tuple(sorted({t.size_option for t in TASKS.values()}))
