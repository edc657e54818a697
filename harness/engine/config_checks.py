"""Checks on a run's resolved config: --cfg-options keys that exist, values that make sense, and
data that fits the model. Each failure is one line, before any model is built.

The flags have their own checks in the CLI; these apply to the merged config, so a value set
through --cfg-options (train_dataloader.batch_size=0, optim_wrapper.optimizer.lr=-1) is refused
the same way as one set through --batch-size or --lr.
"""
from __future__ import annotations

import difflib
import math
from typing import Mapping, Optional

from ..errors import HarnessError

__all__ = ["check_option_keys", "check_values", "check_data_fits"]


def check_option_keys(cfg, options: Mapping[str, object]) -> None:
    """Every --cfg-options key names a place in the config: each dotted parent must exist, and
    a new leaf may not be one typo away from an existing one (`batch_szie`). New leaves are
    allowed otherwise (`train_dataloader.dataset.limit=64` passes an argument the config leaves
    at its default)."""
    for key in options:
        node, path = cfg, []
        parts = key.split(".")
        for i, part in enumerate(parts):
            here = ".".join(path + [part])
            is_leaf = i == len(parts) - 1
            keys = list(node.keys()) if hasattr(node, "keys") else None  # ConfigDict, Config, dict
            if keys is None:
                if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                    node, path = node[int(part)], path + [part]
                    continue
                raise HarnessError(f"--cfg-options {key}: {'.'.join(path)} is not a dict, so it has no key {part!r}")
            if part in node:
                node, path = node[part], path + [part]
                continue
            close = difflib.get_close_matches(part, [str(k) for k in keys], n=3, cutoff=0.75)
            if is_leaf and not close:
                break  # a new argument of an existing dict
            where = ".".join(path) or "the config"
            hint = f"; closest: {', '.join('.'.join(path + [c]) for c in close)}" if close else \
                f"; {where} has {', '.join(sorted(map(str, keys))[:12])}"
            raise HarnessError(f"--cfg-options {key}: {here} does not exist{hint}")


def _positive_int(value, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HarnessError(f"{what} must be an integer >= 1, got {value!r}")


def check_values(cfg) -> None:
    """Budget, batch sizes and learning rate of the merged config."""
    for loader in ("train_dataloader", "test_dataloader"):
        _positive_int(cfg[loader].get("batch_size"), f"{loader}.batch_size")
    loop = cfg.train_cfg
    key = "max_iters" if loop.get("type") == "IterBasedTrainLoop" else "max_epochs"
    _positive_int(loop.get(key), f"train_cfg.{key}")
    lr = cfg.optim_wrapper.get("optimizer", {}).get("lr")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not (math.isfinite(lr) and lr > 0):
        raise HarnessError(f"optim_wrapper.optimizer.lr must be a finite number > 0, got {lr!r}")
    _check_sequence_lengths(cfg)


def _check_sequence_lengths(cfg) -> None:
    """A dataset's windows no longer than the model's max_seq_len. Set apart (--cfg-options
    test_dataloader.dataset.max_seq_len=512 under a model built for 256), the model would fail on
    the first longer batch: for the test set, only after the whole training (issue 25)."""
    arch = cfg.model.get("arch_kwargs") or {}
    want = arch.get("max_seq_len")
    for loader in ("train_dataloader", "test_dataloader"):
        ds = cfg[loader].get("dataset")
        have = ds.get("max_seq_len") if hasattr(ds, "get") else None
        if have is None:
            continue
        _positive_int(have, f"{loader}.dataset.max_seq_len")
        if want is not None:
            _positive_int(want, "the model's max_seq_len")
            if have > want:
                raise HarnessError(f"{loader}.dataset.max_seq_len={have} is longer than the model's "
                                   f"max_seq_len={want}; --model-kwargs max_seq_len={have} sets both")


def check_data_fits(arch_kwargs: Mapping[str, object], dataset, suite_name: str) -> Optional[int]:
    """The model takes the data as the suite serves it: channels, image size, classes, and every
    token id (a vocabulary no larger than the model's). Returns the number of classes the data
    defines, if any."""
    classes = getattr(dataset, "num_classes", None)
    if classes is not None and classes < 2:
        raise HarnessError(f"suite {suite_name}: the data has {classes} class(es); classification needs at least 2 "
                           f"(an ImageFolder tree needs a folder per class)")
    for key, what in (("in_chans", "channels"), ("img_size", "pixels a side")):
        have, want = getattr(dataset, key, None), arch_kwargs.get(key)
        if have is not None and want is not None and int(want) != int(have):
            raise HarnessError(f"suite {suite_name} serves images of {have} {what}, but the model is built for "
                               f"{key}={want}; this suite cannot change it (drop --model-kwargs {key}=...)")
    have, want = getattr(dataset, "vocab_size", None), arch_kwargs.get("vocab_size")
    if have is not None and want is not None and int(want) < int(have):
        raise HarnessError(f"suite {suite_name} has a vocabulary of {have} tokens, but the model is built for "
                           f"vocab_size={want}; build it for the data's (--model-kwargs vocab_size={have})")
    want = arch_kwargs.get("num_classes")
    if classes is not None and want is not None and int(want) != int(classes):
        raise HarnessError(f"suite {suite_name} has {classes} classes, but the model is built for "
                           f"num_classes={want}")
    return classes
