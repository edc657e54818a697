"""Harness overhead: a training step through the mmengine Runner vs a plain PyTorch loop.

Both sides train the same model on the same data (the suite's dataset, DataLoader, batch
size, AdamW and gradient clipping); the Runner side is the harness's own resolved config,
with its hooks, logging, schedulers and message hub. Timed over the same iterations after a
warm-up, repeated alternately, medians compared. Not a test: machines are noisy.

    python -m benchmarks.bench_runner_overhead [--model timm:resnet18] [--iters 40] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from mmengine.hooks import Hook
from mmengine.registry import DATASETS


class _Window(Hook):
    """Wall time from the start of iteration `begin` to the end of iteration `end - 1`.

    It closes before the VERY_LOW hooks: the run saves its one checkpoint at the last iteration
    (~0.8 s for resnet18, 20 ms a step over 40 steps), a cost the plain loop does not pay. Every
    other hook (logger, timers, schedulers, NaN guard, tau, routing log) is inside the window."""
    priority = "LOW"

    def __init__(self, begin: int, end: int):
        self.begin, self.end, self.t0, self.seconds = begin, end, None, None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.begin:
            self.t0 = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter == self.end - 1:
            self.seconds = time.perf_counter() - self.t0


def runner_time(suite, model, warmup, iters, batch_size, seed) -> float:
    from mmengine.runner import Runner
    from harness.run import RunOptions, build_config

    with tempfile.TemporaryDirectory() as work:
        opts = RunOptions(max_iters=warmup + iters, batch_size=batch_size, work_dir=work,
                          cfg_options={"log_level": "WARNING"})
        cfg = build_config(suite, model, seed, opts, "cpu")
        runner = Runner.from_cfg(cfg)
        window = _Window(warmup, warmup + iters)
        runner.register_hook(window)
        runner.train()
        runner.visualizer.close()
        return window.seconds


def plain_time(suite, model, warmup, iters, batch_size, seed) -> float:
    from mmengine.config import Config
    from torch.utils.data import DataLoader
    from harness.engine.wrappers import build_network

    torch.manual_seed(seed)
    cfg = Config.fromfile(suite.config)
    net = build_network(model, **cfg.model["arch_kwargs"])
    dataset = DATASETS.build(cfg.train_dataloader["dataset"])
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=False)
    opt = torch.optim.AdamW(net.parameters(), **{k: v for k, v in cfg.optim_wrapper["optimizer"].items() if k != "type"})
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    done, t0, batches = 0, None, iter(loader)
    while done < warmup + iters:
        if done == warmup:
            t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        logits = net(batch["inputs"])
        loss = loss_fn(logits.float(), batch["data_samples"])
        aux = net.aux_losses() if hasattr(net, "aux_losses") else {}
        for k, v in aux.items():
            loss = loss + cfg.model["aux_weights"].get(k, 0.0) * v
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=1.0)
        opt.step()
        done += 1
    return time.perf_counter() - t0


def main(argv=None) -> None:
    import harness  # noqa: F401  (registers datasets, wrappers, hooks)
    from harness.runtime import tune_allocator_or_exit
    from harness.suites import get_suite

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="timm:resnet18")
    p.add_argument("--suite", default="mnist5k", choices=["mnist5k"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    tune_allocator_or_exit("bench_runner_overhead")
    suite = get_suite(args.suite)
    r_times, p_times = [], []
    for rep in range(args.repeats):  # alternate which side goes first, so drifting load hits both
        sides = [(p_times, plain_time), (r_times, runner_time)]
        for times, fn in (sides if rep % 2 == 0 else sides[::-1]):
            times.append(fn(suite, args.model, args.warmup, args.iters, args.batch_size, rep))
        print(f"repeat {rep}: plain {p_times[-1] / args.iters * 1e3:.1f} ms/step, "
              f"runner {r_times[-1] / args.iters * 1e3:.1f} ms/step", flush=True)
    plain, runner = statistics.median(p_times), statistics.median(r_times)
    print(f"model {args.model}, batch {args.batch_size}, {args.iters} steps x {args.repeats}, "
          f"threads {torch.get_num_threads()}")
    print(f"plain loop {plain / args.iters * 1e3:.2f} ms/step, runner {runner / args.iters * 1e3:.2f} ms/step, "
          f"ratio {runner / plain:.3f} (target <= 1.03)")


if __name__ == "__main__":
    main()
