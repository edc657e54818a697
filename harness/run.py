"""From (suite, model, seed, options) to an mmengine config, a Runner, and a results record.

The suite's config file holds every choice; this module only applies the command-line
overrides to it, checks what can be checked before any work starts, and hands the resolved
config to `Runner.from_cfg`. Training, evaluation, checkpoints and logging are mmengine's.
"""
from __future__ import annotations

import copy
import itertools
import os
import sys
import time
from dataclasses import dataclass, replace
from typing import List, Optional

import torch
from mmengine.config import Config

from . import options
from .engine import checkpoint as ckpt_mod
from .engine.config_checks import check_data_fits, check_option_keys, check_values
from .engine.distributed import launch_info
from .engine.hook_set import keep_harness_hooks
from .engine.hooks import StopAfterHook, TrainWallClockHook, unwrap_model
from .engine.resume import resolve_resume  # noqa: F401 (API)
from .engine import routing_mode as modes
from .engine.schedule import finalize_schedule, follow_loop, loop_total, set_training_length
from .errors import HarnessError
from .measure.budget_eval import calibration_inputs, fit_budgets
from .names import (IMAGE_TASK, TIMM_PREFIX, check_tasks, check_weights, default_work_dir,  # noqa: F401 (API)
                    model_task, resolve_models, shipped_tag, tag_provenance)
from .records import build_record, jsonable_config
from .run_options import RunOptions
from .suites import Suite

__all__ = ["RunOptions", "RunPlan", "plan_runs", "resolve_resume", "resolve_models", "model_task", "check_tasks",
           "build_config", "run_one", "default_work_dir", "preflight"]

# model overrides that also shape the data: one value for both
_SHARED_KEYS = ("img_size", "in_chans", "max_seq_len")
_run_counter = itertools.count()


@dataclass
class RunPlan:
    """One (model, seed) run of a `run` invocation: what to build, and the config it resolved to.
    `opts` are the invocation's options narrowed to this run (its one model and seed, its work dir)."""
    suite: Suite
    model: str
    seed: int
    opts: RunOptions
    cfg: Config
    device: str = "cpu"        # what --device resolved to
    results: str = ""          # the results store its records go to
    finish_only: bool = False  # --resume from a checkpoint at the end of the budget: evaluate only

    def command(self) -> List[str]:
        """argv that reproduces this run alone (the results store aside)."""
        return ["python", "-m", "harness", "run", *self.opts.argv()]


def plan_runs(opts: RunOptions) -> List[RunPlan]:
    """Every (model, seed) run of one `run` invocation, each checked before any of them trains:
    the flags, the models and their task, the data, the model settings, --resume, and that the
    results store and the work dirs can be written."""
    from .engine.distributed import init_cpu_distributed
    from .suites import get_suite, suite_of_config

    if opts.config:
        suite = suite_of_config(opts.config, opts.suite)
        opts = _own_config_defaults(opts)
    elif opts.suite:
        suite = get_suite(opts.suite)
    else:
        raise HarnessError("run needs --suite (or --config)")
    if not opts.models:
        raise HarnessError("run needs --models (or a --config whose model.arch names one)")
    models = resolve_models(opts.models)
    check_tasks(models, suite)  # a shipped tag on its own suite only
    opts.check()
    if opts.eval_only and len(models) > 1:
        raise HarnessError(f"--eval-only evaluates one checkpoint; the patterns matched {len(models)} models")
    for model in models:  # a tag trains from, or is evaluated with, its own weights (harness/names.py)
        check_weights(model, opts.checkpoint)
    options.check_data_root(suite, opts.data_root, opts.cfg_options)
    device = options.resolve_device(opts.device)
    init_cpu_distributed(opts.launcher, device)
    results = opts.results or os.path.join(options.RESULTS_DIR, f"{suite.name}.jsonl")
    many = len(models) * len(opts.seeds) > 1

    def narrowed(model: str, seed: int) -> RunOptions:
        work_dir = opts.work_dir
        if work_dir and many:
            work_dir = os.path.join(work_dir, options.work_dir_name(model), f"seed{seed}")
        return replace(opts, models=[model], seeds=[seed], suite=suite.name, config=suite.config_file or None,
                       work_dir=work_dir)

    # data problems surface before the first model trains; the data may define num_classes
    first, notes = narrowed(models[0], opts.seeds[0]), []
    num_classes = preflight(build_config(suite, models[0], opts.seeds[0], first, device, notes=notes), suite)
    for note in notes:  # once per invocation, not once per run
        print(note, file=sys.stderr)
    plans = [RunPlan(suite, model, seed, o, build_config(suite, model, seed, o, device, num_classes), device, results)
             for model in models for seed in opts.seeds for o in [narrowed(model, seed)]]
    modes.prepare(plans, opts)  # router settings checked; eval-only: the checkpoint's routing mode
    _check_buildable(plans, budgeted=opts.flops_budget is not None)
    for plan in plans:
        resolve_resume(plan)
    # before any training: a store or work dir that cannot be written fails now, not after it
    if not opts.no_record:
        options.check_writable(results, "results store")
    for plan in plans:
        options.check_writable(plan.cfg.work_dir, "work dir", folder_only=True)
    return plans


def _own_config_defaults(opts: RunOptions) -> RunOptions:
    """A config of one's own speaks where the flags are silent, as an mmengine config does under
    tools/train.py: its `work_dir`, and its `model.arch` in place of --models."""
    cfg = Config.fromfile(opts.config)  # suite_of_config has read it: it loads
    arch = (cfg.get("model") or {}).get("arch")
    return replace(opts, models=opts.models or ([arch] if isinstance(arch, str) and arch else []),
                   work_dir=opts.work_dir or cfg.get("work_dir") or None)


def _check_buildable(plans: List[RunPlan], budgeted: bool = False) -> None:
    """Bad --model-kwargs fail here, in one line, before any model trains; so does a --flops-budget
    for a model with no routing decisions to move."""
    from .engine.wrappers import check_buildable
    checked = set()
    for plan in plans:
        model = plan.model
        if model not in checked:
            net = check_buildable(model, plan.cfg.model["arch_kwargs"])
            checked.add(model)
            if budgeted:
                import zoo
                routers = zoo.routing.routers(net)
                if not routers or all(r.spec.mode == "soft" for r in routers):
                    kind = "routes softly (every branch merged)" if routers else "is static"
                    raise HarnessError(f"--flops-budget needs a routed model, and {model} {kind}: "
                                       f"it has no routing decision to move")


# ---------------------------------------------------------------- config


def _datasets(cfg: Config):
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(key)
        if loader:
            yield key, loader["dataset"]


def _set_device(cfg: Config, device: str, amp: bool) -> None:
    cfg.env_cfg["dist_cfg"]["backend"] = "nccl" if device.startswith("cuda") else "gloo"
    if amp:
        ow = cfg.optim_wrapper
        if device == "cpu":  # mmengine's AmpOptimWrapper is GPU-only; CPU autocast is bfloat16
            ow["type"] = "CPUAutocastOptimWrapper"
        else:
            ow["type"] = "AmpOptimWrapper"
            ow["dtype"] = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        cfg.test_cfg["fp16"] = True  # autocast at eval too (bfloat16 on CPU)


def build_config(suite: Suite, model: str, seed: int, opts: RunOptions, device: str,
                 num_classes: Optional[int] = None, notes: Optional[list] = None) -> Config:
    """The suite's config with this run's options applied. num_classes: what the data defines
    (ImageFolder trees, CIFAR), for a config that leaves it open (None). notes: gets the one-line
    notes on the config's hooks (`keep_harness_hooks`), for the caller to print."""
    cfg = Config.fromfile(suite.config)
    loaded_total = loop_total(cfg.get("train_cfg") or {})
    modes.declare_router_settings((cfg.get("model") or {}).get("arch_kwargs"))  # for --cfg-options ...router.*
    if opts.cfg_options:
        check_option_keys(cfg, opts.cfg_options)
        try:
            cfg.merge_from_dict(copy.deepcopy(opts.cfg_options))
        except (TypeError, KeyError, ValueError) as e:
            raise HarnessError(f"--cfg-options: {str(e).splitlines()[0]}") from None
    for key in ("model", "train_cfg", "optim_wrapper", "train_dataloader", "test_dataloader"):
        if not isinstance(cfg.get(key), dict):
            raise HarnessError(f"config key {key} must be a dict, got {cfg.get(key)!r} (check --cfg-options)")
    hook_notes = keep_harness_hooks(cfg)
    if notes is not None:
        notes.extend(hook_notes)
    cfg.model["arch"] = model
    set_training_length(cfg, opts.epochs, opts.max_iters,
                        user_ckpt_interval=any(k.startswith("default_hooks.checkpoint") for k in opts.cfg_options))
    if opts.batch_size is not None:
        cfg.train_dataloader["batch_size"] = int(opts.batch_size)
    if opts.lr is not None:
        cfg.optim_wrapper["optimizer"]["lr"] = float(opts.lr)
    if opts.data_root is not None:
        for _, ds in _datasets(cfg):
            if "root" in ds:
                ds["root"] = opts.data_root
    kwargs = dict(cfg.model.get("arch_kwargs") or {})
    kwargs.update(opts.model_kwargs)
    if kwargs.get("num_classes", 0) is None and num_classes is not None:
        kwargs["num_classes"] = num_classes
    cfg.model["arch_kwargs"] = kwargs
    for key in _SHARED_KEYS:
        if key in opts.model_kwargs:
            for _, ds in _datasets(cfg):
                if key in ds:
                    ds[key] = opts.model_kwargs[key]
    stop = {k: v for k, v in (cfg.get("stop_after") or {}).items() if v is not None}
    if stop:
        cfg.custom_hooks.append(dict(type="StopAfterHook", **stop))
        if stop.get("iters") and cfg.train_cfg.get("type") == "IterBasedTrainLoop":
            cfg.default_hooks["checkpoint"]["interval"] = int(stop["iters"])
    follow_loop(cfg, loaded_total)
    check_values(cfg)
    finalize_schedule(cfg)
    _set_device(cfg, device, opts.amp)
    if opts.compile:
        cfg.compile = True
    cfg.randomness["seed"] = int(seed)
    if opts.verbose:
        cfg.console = "full"
    cfg.launcher = opts.launcher
    if opts.launcher != "none":
        # routed blocks may leave a branch unused in a step; DDP must not wait for its grads
        cfg.find_unused_parameters = True
        if device == "cpu":  # mmengine's default wrapper pins a CUDA device per rank
            cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None,
                                         broadcast_buffers=False, find_unused_parameters=True)
    cfg.work_dir = opts.work_dir or default_work_dir(suite.name, model, seed)
    cfg.experiment_name = f"{suite.name}-{model.replace(':', '-')}-s{seed}-{time.strftime('%Y%m%d_%H%M%S')}-{next(_run_counter)}"
    cfg.load_from = None
    cfg.resume = False
    if opts.eval_only:
        cfg.load_from = opts.checkpoint
    elif opts.resume:
        cfg.resume = True
        cfg.load_from = None if opts.resume == "auto" else opts.resume
    elif opts.checkpoint:
        cfg.load_from = opts.checkpoint  # fine-tune from these weights
    return cfg


def preflight(cfg: Config, suite: Suite) -> Optional[int]:
    """Build the training dataset once, so a bad data root fails before any model is built.
    Returns the number of classes the data defines (ImageFolder trees, CIFAR), if any."""
    from mmengine.registry import DATASETS
    ds_cfg = copy.deepcopy(cfg.test_dataloader["dataset"])
    dataset = DATASETS.build(ds_cfg)
    if len(dataset) == 0:
        raise HarnessError(f"suite {suite.name}: the eval split is empty")
    return check_data_fits(cfg.model.get("arch_kwargs") or {}, dataset, suite.name)


# ---------------------------------------------------------------- running


def _hook(runner, cls):
    return next((h for h in runner.hooks if isinstance(h, cls)), None)


def _metric(runner, cls):
    return next((m for m in runner.test_loop.evaluator.metrics if isinstance(m, cls)), None)


def _measure_flops(net, dataset, eval_batch_size: int, task: str) -> dict:
    """Executed / dense FLOPs on a few evenly spaced eval samples (the record says how many)."""
    from .measure.executed_flops import measure_flops
    from .tasks import get_task
    limit = get_task(task).flops_items
    with torch.no_grad():
        return measure_flops(net, dataset, limit, min(int(eval_batch_size), limit))


def run_one(plan: RunPlan) -> Optional[List[dict]]:
    """Train (unless eval-only), evaluate, and return the results records: one, or one per
    --flops-budget. Returns None when the session was stopped early by `stop_after` (nothing to record).
    The work dir is locked for the whole run."""
    cfg, suite, model, seed, opts = plan.cfg, plan.suite, plan.model, plan.seed, plan.opts
    command, device = plan.command(), plan.device
    from mmengine.dist import is_main_process
    # one lock per run: under a distributed launcher the ranks share the work dir, rank 0 holds it
    lock = _work_dir_lock(cfg.work_dir) if is_main_process() else None
    try:
        return _run_locked(plan, cfg, suite, model, seed, opts, command, device)
    finally:
        if lock is not None:
            lock.release()


def _work_dir_lock(work_dir: str):
    """Held for a whole run: a second run in the same work dir would overwrite the first one's
    checkpoints and logs and record the same (model, suite, seed) twice."""
    from .job_state import hold_lock
    return hold_lock(work_dir, f"work dir {work_dir} is in use by another run; wait for it, or give this "
                               f"run its own --work-dir")


def _run_locked(plan, cfg, suite, model, seed, opts, command, device):
    from .engine.console import HarnessRunner

    ckpt_mod.install_safe_globals()
    # corrupt/foreign: fail before building; its meta says in which routing mode it trained
    meta = ckpt_mod.load_checkpoint_file(opts.checkpoint).get("meta") if opts.checkpoint else None
    resolved = jsonable_config(cfg.to_dict())
    runner = HarnessRunner.from_cfg(cfg)
    try:
        net_model = unwrap_model(runner.model)
        if opts.checkpoint and (opts.eval_only or not opts.resume):
            ckpt_mod.check_checkpoint(opts.checkpoint, net_model, arch=model)
        wall, sessions = None, None
        if not opts.eval_only:
            t0 = time.perf_counter()
            runner.train()
            wall, sessions = time.perf_counter() - t0, 1
            stop = _hook(runner, StopAfterHook)
            if stop is not None and stop.fired:
                return None
            clock = _hook(runner, TrainWallClockHook)
            if clock is not None and plan.finish_only:  # train() ran no iteration: the checkpoint's figures
                wall, sessions = clock.before_s, clock.sessions_before
            elif clock is not None:  # every session of a resumed run, not only this one
                wall, sessions = clock.total_s, clock.sessions
        loop = runner.train_loop if not opts.eval_only else None
        launch = launch_info(opts.launcher, command, cfg.train_dataloader["batch_size"])
        command = launch.pop("command")
        train = dict(epochs=(loop.epoch if loop is not None else None),
                     iters=(loop.iter if loop is not None else None),
                     wall_s=wall, sessions=sessions, lr=cfg.optim_wrapper["optimizer"]["lr"],
                     batch_size=cfg.train_dataloader["batch_size"],
                     loop=cfg.train_cfg.get("type"), amp=bool(opts.amp), compile=bool(cfg.get("compile")),
                     routing_mode=modes.recorded(net_model, opts, meta), **launch)
        scale = cfg.get("auto_scale_lr") or {}
        if scale.get("enable"):  # mmengine scaled the lr to the global batch: lr x global / base
            train["lr_scaled"] = train["lr"] * train["global_batch_size"] / scale["base_batch_size"]
        if opts.eval_only:
            train.update(eval_only=True, checkpoint=opts.checkpoint)
        train.update(tag_provenance(model))  # a shipped tag: which weights it evaluated or started from
        params = sum(p.numel() for p in net_model.net.parameters())
        common = dict(model=model, suite=suite.name, seed=seed, task=suite.task, params=params, train=train,
                      resolved_config=resolved, command=command, device=device, **_zoo_info(model))
        if not opts.flops_budget:
            return [build_record(**common, **_evaluate(runner, cfg, suite))]
        import zoo
        runner.load_or_resume()  # test() would load the checkpoint lazily: fit on the trained weights
        net = net_model.net
        calibration = calibration_inputs(cfg, suite.task, next(net.parameters()).device)
        records = []
        for fit in fit_budgets(net, opts.flops_budget, calibration, model):
            with zoo.routing.flops_budget(net, fit):
                measured = _evaluate(runner, cfg, suite)
            budget = dict(target=fit.target, shift=fit.shift, calibration_fraction=fit.fraction,
                          reachable=list(fit.reachable), calibration_items=int(calibration.shape[0]),
                          calibration_split="train")
            records.append(build_record(**common, **measured, budget=budget))
        return records
    finally:
        runner.visualizer.close()


def _zoo_info(model: str) -> dict:
    """The record's family, static form and static plans (zoo.model_info)."""
    if model.startswith(TIMM_PREFIX):
        return dict(family="timm")
    import zoo
    if shipped_tag(model):  # a row of its own; its model's static plans are that model's rows
        return dict(family=zoo.model_info(shipped_tag(model).model)["family"])
    info = zoo.model_info(model)
    return dict(family=info["family"], static_form=info.get("static_form"), static_plans=info.get("static_plans"))


def _evaluate(runner, cfg: Config, suite: Suite) -> dict:
    """Test loop metrics, routing mix, throughput and FLOPs of the runner's model as it is now."""
    from .measure.untrained import mark_untrained
    from .engine.metrics import RoutingMetric, ThroughputMetric
    from .engine.recipe import ZooEMAHook
    metrics = runner.test()
    ema = _hook(runner, ZooEMAHook)
    if ema is not None:  # that was the average; the record's main figures are the raw weights'
        ema.swap = False
        try:
            raw = runner.test()
        finally:
            ema.swap = True
        metrics = {**raw, **{f"ema_{k}": v for k, v in metrics.items() if "/" not in k}}
    routing_metric, throughput_metric = _metric(runner, RoutingMetric), _metric(runner, ThroughputMetric)
    routing = mark_untrained(routing_metric.summary if routing_metric else {}, unwrap_model(runner.model).net,
                              cfg.model["arch"])
    tp = dict(throughput_metric.summary) if throughput_metric else {}
    tp["batch_size"] = cfg.test_dataloader["batch_size"]
    test_ds = runner.test_dataloader.dataset
    data = {k: v for k, v in getattr(test_ds, "metainfo", {}).items() if k != "classes"}
    data["test_items"] = len(test_ds)
    flops = _measure_flops(unwrap_model(runner.model).net, test_ds, cfg.test_dataloader["batch_size"], suite.task)
    return dict(metrics={k: v for k, v in metrics.items() if "/" not in k}, routing=routing,
                throughput=tp, data=data, flops=flops)
