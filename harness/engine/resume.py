"""`--resume`: which checkpoint a run continues from, checked before any training."""
from __future__ import annotations

import copy
import os

from . import checkpoint as ckpt_mod
from .routing_mode import check_resume_mode
from ..errors import HarnessError

__all__ = ["resolve_resume"]


def resolve_resume(plan) -> None:
    """Point a --resume run at a checkpoint the safe loader has read, that fits the model, and
    that is not past the end of the budget; refuse anything else in one line.

    A checkpoint exactly at the end of the budget is a run killed after its last save (in its
    final evaluation): it resumes with nothing left to train (`plan.finish_only`), evaluates
    those weights and writes the record an uninterrupted run writes (same config, same train
    info: its epochs, iterations, wall-clock and sessions as the checkpoint holds them).

    --resume (auto) reads the work dir's `last_checkpoint` itself instead of leaving it to
    mmengine, whose loader would surface a missing or unsafe file as a traceback. With no
    checkpoint in the work dir yet, the run starts from the beginning."""
    import torch
    from mmengine.registry import MODELS
    cfg, opts = plan.cfg, plan.opts
    if not opts.resume:
        return
    path = opts.resume
    if path == "auto":
        marker = os.path.join(cfg.work_dir, "last_checkpoint")
        if not os.path.exists(marker):
            cfg.resume, cfg.load_from = False, None
            print(f"harness: {plan.model} seed {plan.seed}: nothing to resume in {cfg.work_dir}; starting anew")
            return
        with open(marker) as f:
            path = os.path.join(cfg.work_dir, os.path.basename(f.read().strip()))
        if not os.path.exists(path):
            raise HarnessError(f"{marker} names {path}, which does not exist; nothing to resume from "
                               f"(delete the marker to start anew)")
    with torch.device("meta"):
        wrapper = MODELS.build(copy.deepcopy(cfg.model))
    # a run continues in the routing mode it trained in; checked before the keys, which differ between
    # modes (a fixed-capacity router's threshold buffer)
    check_resume_mode(ckpt_mod.load_checkpoint_file(path), wrapper, path)
    ckpt = ckpt_mod.check_checkpoint(path, wrapper, arch=plan.model)  # safe load + keys and shapes
    meta = ckpt.get("meta") or {}
    by_iter = cfg.train_cfg.get("type") == "IterBasedTrainLoop"
    done, total = (meta.get("iter"), cfg.train_cfg["max_iters"]) if by_iter else \
        (meta.get("epoch"), cfg.train_cfg["max_epochs"])
    unit = "iteration" if by_iter else "epoch"
    if isinstance(done, int) and done > total:
        raise HarnessError(f"checkpoint {path} is at {unit} {done}, past this run's budget of "
                           f"{total} {unit}s: nothing to resume (raise the budget, or evaluate it with "
                           f"--eval-only --checkpoint)")
    if isinstance(done, int) and done == total:
        plan.finish_only = True
        print(f"harness: {plan.model} seed {plan.seed}: {path} is at the end of the budget ({unit} {done}); "
              f"evaluating it")
    cfg.resume, cfg.load_from = True, path
