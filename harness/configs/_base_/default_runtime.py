# Runtime shared by every suite: hooks, logging, TensorBoard, randomness, launcher.
default_scope = 'mmengine'
# the harness's datasets, wrappers, hooks and metrics, for a bare `Runner.from_cfg` too
custom_imports = dict(imports=['harness'], allow_failed_imports=False)

# Every hook the harness needs is a named default hook, not a custom one: mmengine merges a child
# config's `default_hooks` by key but replaces a `custom_hooks` list whole, so a config of one's own
# that writes `custom_hooks = [...]` keeps all of these (docs/DESIGN.md, "Hooks a config cannot
# lose"). Tune one by key (`default_hooks.tau_schedule.end=0.3`), drop one with `=None`.
default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    logger=dict(type='LoggerHook', interval=20),  # the training progress line, with ETA
    param_scheduler=dict(type='ParamSchedulerHook'),
    # one checkpoint per epoch (or per `interval` iters in iteration mode), only the last kept
    # written to a temporary name and renamed into place; the old one is removed only after
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, max_keep_ckpts=1, save_last=True),
    nan_guard=dict(type='NaNGuardHook'),
    safe_checkpoint=dict(type='SafeCheckpointHook'),  # checkpoints that load with weights_only=True
    rng_state=dict(type='RNGStateHook'),  # --resume continues the random streams exactly
    train_wall_clock=dict(type='TrainWallClockHook'),  # train.wall_s sums every session of a resumed run
    # the routing mode that trained the weights, in checkpoint meta (harness/engine/routing_mode.py)
    routing_mode=dict(type='RoutingModeHook'),
    eval_progress=dict(type='EvalProgressHook'),
    console_progress=dict(type='ConsoleProgressHook'),  # the short console's line per logger interval
    # Gumbel temperature of every router; a no-op for static and timm models
    tau_schedule=dict(type='TauScheduleHook', start=1.0, end=0.5, schedule='cosine'),
    # per-router choice shares of the training routes (and tau), logged at the logger interval
    routing_log=dict(type='RoutingLogHook'),
    # the routing objectives' warm-up ramps (zoo.layers.objectives: ESH's ponder weight is 0 for
    # the first quarter of training, then ramps linearly to its weight at the half); other
    # auxiliary weights stay constant
    aux_weight_schedule=dict(type='AuxWeightScheduleHook'),
)

# a config's own hooks; the harness adds a StopAfterHook here for `stop_after`
custom_hooks = []

# `stop_after.epochs=N` (or `.iters=N`) ends this session after N epochs with the schedule
# unchanged; `--resume` then continues it (the harness adds a StopAfterHook for it).
stop_after = dict(epochs=None, iters=None)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'),  # the CLI picks nccl when running on CUDA
)

visualizer = dict(type='Visualizer',
                  vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
log_level = 'INFO'
# 'short': the console keeps warnings and one line per logger interval (harness.console); the log
# file in the work dir keeps everything. 'full' (--verbose): mmengine's own console output.
console = 'short'

load_from = None
resume = False
launcher = 'none'
randomness = dict(seed=0, deterministic=False, diff_rank_seed=False)
