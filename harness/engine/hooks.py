"""Training hooks mmengine lacks: Gumbel temperature and auxiliary-weight schedules, a NaN
guard, an interruption point for resumable sessions, and an eval progress bar.

mmengine's parameter schedulers only reach optimiser param_groups, so the routing
temperature and the loss weights get hooks of their own. Both are pure functions of the
iteration count (restart-safe by construction) and also store their state in checkpoint meta.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..errors import HarnessError

__all__ = ["TauScheduleHook", "AuxWeightScheduleHook", "NaNGuardHook", "StopAfterHook",
           "EvalProgressHook", "RNGStateHook", "tau_at", "ramp_weight"]


def unwrap_model(model):
    """The model inside a DDP-style wrapper, or the model itself."""
    return model.module if is_model_wrapper(model) else model


def _progress(runner) -> float:
    """Fraction of training done before the current iteration: 0 at the first, 1 at the last."""
    return min(runner.iter / max(runner.max_iters - 1, 1), 1.0)


def tau_at(progress: float, start: float, end: float, schedule: str) -> float:
    if schedule == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "exponential":
        return start * (end / start) ** progress
    if schedule == "constant":
        return start
    raise ValueError(f"tau schedule must be 'cosine', 'exponential' or 'constant', got {schedule!r}")


def ramp_weight(progress: float, value: float, begin: float = 0.0, end: float = 0.0) -> float:
    """0 before `begin`, a linear ramp to `value` until `end`, then `value` (fractions of training)."""
    if progress < begin:
        return 0.0
    if progress >= end:
        return value
    return value * (progress - begin) / (end - begin)


@HOOKS.register_module()
class TauScheduleHook(Hook):
    """Sets every router's Gumbel temperature before each training iteration."""
    priority = "ABOVE_NORMAL"

    def __init__(self, start: float = 1.0, end: float = 0.5, schedule: str = "cosine"):
        if not (start > 0 and end > 0):
            raise ValueError(f"tau start and end must be > 0, got {start}, {end}")
        tau_at(0.0, start, end, schedule)  # validates the name now, not mid-run
        self.start, self.end, self.schedule = float(start), float(end), schedule
        self.tau: Optional[float] = None
        self._routers = None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        import zoo
        if self._routers is None:  # walk the module tree once, not every step
            self._routers = zoo.routing.routers(runner.model)
        self.tau = tau_at(_progress(runner), self.start, self.end, self.schedule)
        for router in self._routers:
            router.set_tau(self.tau)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["tau_schedule"] = dict(
            tau=self.tau, start=self.start, end=self.end, schedule=self.schedule)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        import zoo
        state = checkpoint.get("meta", {}).get("tau_schedule")
        if state and state.get("tau") is not None:
            self.tau = float(state["tau"])
            zoo.routing.set_tau(runner.model, self.tau)


@HOOKS.register_module()
class RoutingLogHook(Hook):
    """Logs each router's choice shares and tau during training, so routing can be followed
    over training (`python -m harness compare`), not only at the final eval.

    The shares are those of the training forward (single Gumbel draws), the routes the loss
    actually saw. They go through the message hub as `train/routing/<layer>/<choice>`, which
    mmengine's LoggerHook writes to the text log, scalars.json and TensorBoard at its interval.
    It runs before LoggerHook (BELOW_NORMAL), so the line logged at iteration i holds the
    shares of iteration i, not of i - 1.
    """
    priority = "NORMAL"

    def __init__(self):
        self._routers = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        import zoo
        if self._routers is None:
            self._routers = zoo.routing.routers(unwrap_model(runner.model))
        hub = runner.message_hub
        for router in self._routers:
            if router.last is None:
                continue
            for choice, share in router.last.shares().items():
                hub.update_scalar(f"train/routing/{router.layer}/{choice}", share)
        if self._routers:
            hub.update_scalar("train/tau", float(self._routers[0].tau))


@HOOKS.register_module()
class AuxWeightScheduleHook(Hook):
    """Ramps auxiliary-loss weights: each objective with a `ramp` (zoo.layers.objectives, e.g.
    ESH's ponder: 0 for the first quarter of training, then linear to its weight at the half)
    ramps to the model's configured weight for it. `schedules` adds or replaces ramps:
    schedules=dict(ponder=dict(value=0.01, begin=0.3, end=0.6)). Other weights stay constant."""
    priority = "ABOVE_NORMAL"

    def __init__(self, schedules: Optional[Dict[str, dict]] = None):
        self.schedules = {k: dict(v) for k, v in (schedules or {}).items()}
        for name, s in self.schedules.items():
            if "value" not in s or s.get("end", 0.0) < s.get("begin", 0.0):
                raise ValueError(f"aux weight schedule {name!r} needs value and begin <= end, got {s}")
        self.weights: Dict[str, float] = {}
        self._ramps: Optional[Dict[str, dict]] = None

    def _model_ramps(self, model) -> Dict[str, dict]:
        """The objectives' own ramps, to the weight the model was configured with."""
        ramps = {}
        for name, objective in getattr(model, "objectives", {}).items():
            if objective.ramp is not None and name in model.aux_weights:
                ramps[name] = dict(value=model.aux_weights[name], begin=objective.ramp[0], end=objective.ramp[1])
        return {**ramps, **self.schedules}

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model, p = unwrap_model(runner.model), _progress(runner)
        if self._ramps is None:
            self._ramps = self._model_ramps(model)
        for name, s in self._ramps.items():
            self.weights[name] = ramp_weight(p, **s)
            model.aux_weights[name] = self.weights[name]

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["aux_weights"] = dict(unwrap_model(runner.model).aux_weights)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves the torch / numpy / python RNG states in checkpoints and restores them on resume,
    so Gumbel noise, dropout and augmentation continue exactly where an interrupted run left
    off (mmengine restores weights, optimiser, schedulers and data order, not the RNGs).
    Stored as tensors and plain Python values, so loading needs no extra allowlisted globals."""
    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        import random

        import numpy as np
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = dict(torch=torch.get_rng_state(), python=random.getstate(),
                     numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                            float(cached)))
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault("meta", {})["rng_state"] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        import random

        import numpy as np
        state = checkpoint.get("meta", {}).get("rng_state")
        if not state or not getattr(runner, "_resume", False):
            return  # only a resumed training run continues the random streams
        torch.set_rng_state(state["torch"])
        random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),) + tuple(state["python"][2:]))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


@HOOKS.register_module()
class NaNGuardHook(Hook):
    """Stops training at the first non-finite loss, or non-finite gradient norm (a finite loss
    with NaN gradients poisons the weights one step before the loss shows it), naming the
    iteration. Under fp16 loss scaling inf gradients are expected (the step is skipped), so
    gradients are then not checked."""
    priority = "HIGHEST"

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        where = f"at iteration {runner.iter + 1} (epoch {runner.epoch + 1})"
        bad = {k: float(v.detach()) for k, v in (outputs or {}).items()
               if isinstance(v, torch.Tensor) and v.numel() == 1 and not torch.isfinite(v).item()}
        if bad:
            terms = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise HarnessError(f"non-finite loss {where}: {terms}; training stopped, no result recorded "
                               f"(try a lower --lr)")
        buf = runner.message_hub.log_scalars.get("train/grad_norm")
        scaled = getattr(getattr(runner, "optim_wrapper", None), "loss_scaler", None) is not None
        if buf is not None and not scaled and not math.isfinite(float(buf.current())):
            raise HarnessError(f"non-finite gradient norm ({float(buf.current())}) {where} with a finite loss; "
                               f"training stopped, no result recorded (the model's backward overflowed)")


@HOOKS.register_module()
class StopAfterHook(Hook):
    """Ends a session early while keeping the full schedule, so `--resume` continues it exactly
    (set through the config key `stop_after=dict(epochs=N)` or `dict(iters=N)`)."""
    priority = "LOWEST"

    def __init__(self, epochs: Optional[int] = None, iters: Optional[int] = None):
        self.epochs, self.iters, self.fired = epochs, iters, False

    def _stop(self, runner) -> None:
        runner.train_loop.stop_training = True
        self.fired = True

    def after_train_epoch(self, runner) -> None:
        # called before the loop advances runner.epoch, hence + 1
        if self.epochs is not None and runner.epoch + 1 >= self.epochs:
            self._stop(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # called before the loop advances runner.iter, hence + 1
        if self.iters is not None and runner.iter + 1 >= self.iters:
            self._stop(runner)


@HOOKS.register_module()
class TrainWallClockHook(Hook):
    """Training wall-clock summed over every session of a run: each checkpoint carries the time
    spent to reach it (meta.train_wall_s) and the sessions so far, and a resumed session adds
    its own time to what it loaded. Time a killed session spent after its last checkpoint is
    not counted; that work is redone, and the redone time is."""
    priority = "VERY_LOW"

    def __init__(self):
        self.before_s, self.sessions_before, self._t0, self._end = 0.0, 0, None, None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get("meta") or {}
        self.before_s = float(meta.get("train_wall_s", 0.0))
        self.sessions_before = int(meta.get("train_sessions", 0))

    def before_train(self, runner) -> None:
        self._t0, self._end = time.perf_counter(), None

    def after_train(self, runner) -> None:
        self._end = time.perf_counter()

    @property
    def total_s(self) -> float:
        if self._t0 is None:
            return self.before_s
        return self.before_s + ((self._end or time.perf_counter()) - self._t0)

    @property
    def sessions(self) -> int:
        return self.sessions_before + (self._t0 is not None)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {}).update(train_wall_s=self.total_s, train_sessions=self.sessions)


@HOOKS.register_module()
class EvalProgressHook(Hook):
    """A progress bar over evaluation batches (training progress is the LoggerHook's ETA line)."""
    priority = "LOW"

    def __init__(self):
        self.bar = None

    def _start(self, runner, loader) -> None:
        from mmengine.dist import is_main_process
        from mmengine.utils import ProgressBar
        # file= given: mmengine binds sys.stdout as a default at import, which may be long gone
        self.bar = ProgressBar(len(loader), file=sys.stdout) if is_main_process() else None

    def _step(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def _end(self) -> None:
        if self.bar is not None:
            self.bar.file.write("\n")
            self.bar.file.flush()
        self.bar = None

    def before_test_epoch(self, runner) -> None:
        self._start(runner, runner.test_dataloader)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._end()

    def before_val_epoch(self, runner) -> None:
        self._start(runner, runner.val_dataloader)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._end()
