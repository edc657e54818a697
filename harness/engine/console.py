"""What a run prints: one short line per logger interval and the result, unless --verbose.

mmengine logs its environment, the config, the hook table and 500-character iteration lines to
the console and to the log file in the work dir. With `console = 'short'` (the default in
`_base_/default_runtime.py`) the console keeps warnings, errors and the lines this module's hook
writes; the log file still gets everything. `--verbose` sets `console = 'full'`.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time

from mmengine.hooks import Hook
from mmengine.registry import HOOKS, RUNNERS
from mmengine.runner import Runner

__all__ = ["HarnessRunner", "ConsoleProgressHook", "ShortConsoleFilter"]

# warnings mmengine repeats on every run that say nothing about this one (an iteration-based
# loop restarts its dataloader by design)
_NOISE = ("will be deprecated", "is the alias of", "Reach the end of the dataloader")


class ShortConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "harness_console", False):
            return True
        return record.levelno >= logging.WARNING and not any(n in record.getMessage() for n in _NOISE)


def _short(cfg) -> bool:
    return (cfg.get("console") or "short") == "short"


@RUNNERS.register_module()
class HarnessRunner(Runner):
    """mmengine's Runner with the console kept short (the log file is untouched)."""

    def build_logger(self, log_level="INFO", log_file=None, **kwargs):
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        if _short(self.cfg):
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler and not any(
                        isinstance(f, ShortConsoleFilter) for f in handler.filters):
                    handler.addFilter(ShortConsoleFilter())
        return logger


@HOOKS.register_module()
class ConsoleProgressHook(Hook):
    """One line per logger interval on the short console: iteration, loss, lr, tau, ETA."""
    priority = "BELOW_NORMAL"

    def __init__(self):
        self._t0 = self._start_iter = None
        self._interval = 50

    def before_train(self, runner) -> None:
        from mmengine.hooks import LoggerHook
        self._t0, self._start_iter = time.perf_counter(), runner.iter
        logger = next((h for h in runner.hooks if isinstance(h, LoggerHook)), None)
        self._interval = int(getattr(logger, "interval", 50))  # the full console's interval

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not _short(runner.cfg):
            return  # mmengine's LoggerHook prints the full line
        done, total = runner.iter + 1, runner.max_iters
        if done % self._interval and done != total:
            return
        hub = runner.message_hub
        arch = (runner.cfg.get("model") or {}).get("arch") or "train"
        seed = (runner.cfg.get("randomness") or {}).get("seed")
        parts = [f"{arch} seed {seed} iter {done}/{total}"]
        for key, fmt in (("train/loss", "loss {:.4f}"), ("train/lr", "lr {:.2e}"), ("train/tau", "tau {:.2f}")):
            scalar = hub.log_scalars.get(key)
            if scalar is not None:
                parts.append(fmt.format(scalar.current()))
        elapsed = time.perf_counter() - self._t0
        rate = (done - self._start_iter) / max(elapsed, 1e-9)
        eta = (total - done) / rate if rate > 0 else 0.0
        parts.append(f"elapsed {_dt.timedelta(seconds=round(elapsed))} eta {_dt.timedelta(seconds=round(eta))}")
        runner.logger.info("  ".join(parts), extra={"harness_console": True})
