"""The training schedule's length and the parameter schedulers that follow it.

The suite configs are complete (every scheduler end is set), so `--epochs`, `--max-iters` and
`--cfg-options` that change the loop's length must move the schedule with it: `set_training_length`
replaces the loop, `follow_loop` releases the ends that followed the loaded loop, and
`finalize_schedule` fills them (`end=None` in a config of one's own means the same).
"""
from __future__ import annotations

from typing import Optional

from mmengine.config import Config

from ..errors import HarnessError

__all__ = ["loop_total", "set_training_length", "follow_loop", "finalize_schedule"]


def loop_total(train_cfg):
    """The loop's length in its own unit, as configured (check_values rejects a bad one)."""
    by_epoch = train_cfg.get("type", "EpochBasedTrainLoop") == "EpochBasedTrainLoop"
    return train_cfg.get("max_epochs" if by_epoch else "max_iters")


def set_training_length(cfg: Config, epochs: Optional[int], max_iters: Optional[int],
                        user_ckpt_interval: bool = False) -> None:
    """--epochs / --max-iters replace the suite's loop (`follow_loop` then moves the schedule).
    The training length only: not the compute budget a routed model trains towards
    (`RouterSpec.compute_target`), nor the inference knob (`zoo.routing.flops_budget`)."""
    if epochs is not None and max_iters is not None:
        raise HarnessError("give --epochs or --max-iters, not both")
    if epochs is None and max_iters is None:
        return
    if epochs is not None:
        cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=int(epochs), val_interval=10**9)
    if max_iters is not None:
        cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=int(max_iters), val_interval=10**9)
    by_epoch = epochs is not None
    cfg.log_processor["by_epoch"] = by_epoch
    cfg.default_hooks["logger"]["log_metric_by_epoch"] = by_epoch
    ckpt = cfg.default_hooks["checkpoint"]
    ckpt["by_epoch"] = by_epoch
    if not user_ckpt_interval:  # an interval the user set with --cfg-options stays theirs
        ckpt["interval"] = 1 if by_epoch else int(max_iters)


def follow_loop(cfg: Config, loaded_total: int) -> None:
    """The suite configs are complete (a bare `Runner.from_cfg` runs them), so their schedules
    end at their own loop's length. When --epochs, --max-iters or --cfg-options change that
    length, a scheduler that ended with the loaded loop (its `end`, or a `T_max` that spans from
    its `begin` to that end) is released to end with the new one (`finalize_schedule`)."""
    if loop_total(cfg.train_cfg) == loaded_total:
        return
    for s in cfg.get("param_scheduler") or []:
        if s.get("end") == loaded_total:
            s["end"] = None
            if s.get("T_max") == loaded_total - s.get("begin", 0):
                s["T_max"] = None


def finalize_schedule(cfg: Config) -> None:
    """Fill `end=None` (end of training) and make the schedulers match the train loop type."""
    by_epoch = cfg.train_cfg.get("type", "EpochBasedTrainLoop") == "EpochBasedTrainLoop"
    total = loop_total(cfg.train_cfg)
    for s in cfg.get("param_scheduler") or []:
        if not by_epoch and s.get("by_epoch", True):
            s["by_epoch"] = False
            s.pop("convert_to_iter_based", None)
        if s.get("end") is None:
            s["end"] = int(total)
        if s.get("begin", 0) >= s["end"]:
            raise HarnessError(f"{s.get('type')} begins at {s.get('begin')} but training ends at {s['end']} "
                               f"({'epochs' if by_epoch else 'iterations'}): train longer, or move its begin "
                               f"with --cfg-options")
        if "T_max" in s and s["T_max"] is None:
            s["T_max"] = s["end"] - s.get("begin", 0)
