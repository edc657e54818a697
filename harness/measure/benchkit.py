"""The measuring parts of `python -m harness bench`: inputs, fixed routing mixes, timing, memory.

Kept apart from the CLI (`harness.commands.bench`) so `benchmarks/` scripts time things the same way.

* Fixed mixes. `skip=P` sends a random share P of the items at each router's granularity to the
  router's cheap choice and the rest to its full one (`Router.cheap_choice` / `full_choice`): DHVN sample -> conv only
  instead of both (its transformer branch does not run), ESH-Vision patch -> SSM instead of
  attention (the SSM is the dearer branch per patch; attention is full because only it ponders),
  Exp11 token -> GDN alone instead of GDN + softmax attention (mix="add"). The draw is made once
  per router and item shape (`FrozenPolicy`) and then replayed, so sparse and dense runs, the
  FLOP count and every timed step see exactly the same decisions.
* Timing alternates the runs being compared step by step (A B A B ...), so a noisy neighbour
  slows both alike; ratios are medians of the per-pair ratios.
* Trust on a shared machine: every figure carries its thread count, the spread of its rounds
  (min / median / max, `spread`) and the load around it (`LoadGate.watch`): the 1-minute load
  average before and after, and the CPU that *other* processes used while it ran, read from
  /proc (machine busy time minus this process's own). The load average counts this process's
  own threads (at 2 threads on 2 cores it climbs to 2 with nothing else running), so it is
  recorded but the judgement uses the other processes' share: above `max_load` cores' worth the
  gate waits (at most `max_wait_s`) before timing, a run that still saw more is made once more
  (`LoadGate.run`), and a figure whose last run saw more is marked unreliable.
* Memory: torch.profiler's memory timeline (profile_memory + record_shapes + with_stack) over
  one eval forward; the figure is the peak of the tensor bytes it tracks on the CPU (weights,
  inputs, activations and temporaries it can attribute), not process RSS.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import runtime
from ..errors import HarnessError

__all__ = ["parse_policy", "FrozenPolicy", "policy_for", "alternate", "median_ratio", "pair_ratios", "spread",
           "LoadGate", "CpuWindow", "loadavg", "peak_memory_bytes", "routing_context", "step_fn", "conditions"]


def parse_policy(text: str) -> Dict[str, float]:
    """'skip=0.25' or 'conv=0.25,both=0.75' or 'conv' -> {name: share}. Shares are not yet
    checked against a model's routers (`policy_for` does that)."""
    shares: Dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise HarnessError(f"bad --policy {text!r}: empty entry; expected e.g. skip=0.25 or conv=0.5,both=0.5")
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            value = "1"
        try:
            share = float(value)
        except ValueError:
            raise HarnessError(f"bad --policy {text!r}: {value!r} is not a number") from None
        if not 0.0 <= share <= 1.0:
            raise HarnessError(f"bad --policy {text!r}: share {share} is outside [0, 1]")
        if not name or name in shares:
            raise HarnessError(f"bad --policy {text!r}: {'empty' if not name else 'repeated'} choice name")
        shares[name] = share
    if "skip" in shares and len(shares) > 1:
        raise HarnessError(f"bad --policy {text!r}: skip=P stands alone (it implies the rest take the full path)")
    if "skip" not in shares and abs(sum(shares.values()) - 1.0) > 1e-6:
        raise HarnessError(f"bad --policy {text!r}: shares sum to {sum(shares.values()):g}, expected 1")
    return shares


def policy_for(model: nn.Module, shares: Dict[str, float]) -> Dict[str, Dict[str, float]]:
    """Per router layer, the shares over its own choices. Raises HarnessError when a name does
    not fit the model's routers."""
    import zoo

    rs = zoo.routing.routers(model)
    if not rs:
        raise HarnessError(f"{type(model).__name__} has no routers; --policy needs a routed model")
    out = {}
    for r in rs:
        if "skip" in shares:
            # the router declares its full form and its cheapest other choice
            p = shares["skip"]
            out[r.layer] = {r.cheap_choice: p, r.full_choice: 1.0 - p}
        else:
            unknown = sorted(set(shares) - set(r.choices))
            if unknown:
                raise HarnessError(f"bad --policy: router {r.layer!r} has choices {', '.join(r.choices)}, "
                                   f"not {', '.join(unknown)} (or use skip=P)")
            out[r.layer] = dict(shares)
    return out


class FrozenPolicy:
    """A `zoo.routing.force` policy: draws each router's decisions once with
    `zoo.routing.random_policy` (seeded), then replays them for the same item shape."""

    def __init__(self, per_router: Dict[str, Dict[str, float]], seed: int = 0):
        import zoo
        self.gen = torch.Generator().manual_seed(seed)
        self.policies = {layer: zoo.routing.random_policy({k: v for k, v in s.items() if v > 0}, self.gen)
                         for layer, s in per_router.items()}
        self.cache: Dict[Tuple[str, tuple], torch.Tensor] = {}

    def __call__(self, router, shape: torch.Size) -> torch.Tensor:
        key = (router.layer, tuple(shape))
        if key not in self.cache:
            self.cache[key] = self.policies[router.layer](router, shape)
        return self.cache[key]


@contextlib.contextmanager
def routing_context(model: nn.Module, execution: Optional[str], policy: Optional[Callable]):
    """zoo.routing.execution + zoo.routing.force, each only when given."""
    import zoo
    with contextlib.ExitStack() as stack:
        if execution in ("sparse", "dense"):
            stack.enter_context(zoo.routing.execution(model, execution))
        if policy is not None:
            stack.enter_context(zoo.routing.force(model, policy))
        yield


def step_fn(model: nn.Module, x: torch.Tensor, execution: Optional[str], policy, train: bool,
            targets: Optional[torch.Tensor] = None, compiled: Optional[Callable] = None) -> Callable[[], float]:
    """One timed step -> seconds. Eval: a no-grad forward. Train: forward, cross-entropy against
    `targets`, backward and an SGD step (timm benchmark.py's train mode). compiled: what to call
    instead of the model (its torch.compile); the routing context still sets the model's modes."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-6) if train else None
    call = compiled or model
    # CUDA runs asynchronously: a step ends when the device has finished it
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def run() -> float:
        with routing_context(model, execution, policy):
            if not train:
                with torch.no_grad():
                    sync()
                    t0 = time.perf_counter()
                    call(x)
                    sync()
                    return time.perf_counter() - t0
            sync()
            t0 = time.perf_counter()
            out = call(x)
            loss = F.cross_entropy(out.float().reshape(-1, out.shape[-1]), targets.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
            return time.perf_counter() - t0
    return run


def alternate(fns: Sequence[Callable[[], float]], warmup: int, iters: int) -> List[List[float]]:
    """Step times of each fn, called in turn A B A B ... (after `warmup` untimed rounds)."""
    for _ in range(warmup):
        for f in fns:
            f()
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(iters):
        for t, f in zip(times, fns):
            t.append(f())
    return times


def pair_ratios(num: Sequence[float], den: Sequence[float]) -> List[float]:
    """num[i] / den[i] for each pair of runs made back to back."""
    return [n / d for n, d in zip(num, den)]


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over pairs of num[i] / den[i] (pairs ran back to back)."""
    return statistics.median(pair_ratios(num, den))


def spread(values: Sequence[float], scale: float = 1.0) -> Dict[str, float]:
    """min / median / max of the rounds (times `scale`), the figure quoted being the median."""
    if not values:
        raise ValueError("spread of no rounds")
    return dict(min=min(values) * scale, median=statistics.median(values) * scale, max=max(values) * scale)


def loadavg() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _jiffies() -> Optional[Tuple[int, int]]:
    """(busy clock ticks of the whole machine, of this process and all its threads); None off Linux.
    Steal time counts as busy: on a VM it is CPU another guest took from us."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces; fields follow it
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])  # utime + stime


class CpuWindow:
    """From its creation to `other_load()`: the cores' worth of CPU other processes used."""

    def __init__(self):
        self.t0, self.j0 = time.monotonic(), _jiffies()

    def other_load(self) -> Optional[float]:
        j1, dt = _jiffies(), time.monotonic() - self.t0
        if self.j0 is None or j1 is None or dt <= 0:
            return None
        others = (j1[0] - self.j0[0]) - (j1[1] - self.j0[1])
        return round(max(0.0, others / os.sysconf("SC_CLK_TCK") / dt), 3)


class LoadGate:
    """Waits for a quiet machine before a figure and records the load around it (module docstring).

    max_load: cores' worth of CPU other processes may use (None: record only, judge nothing);
    max_wait_s: longest wait for them to drop below it. `window` and `sleep` are the clock's
    seams (tests replace them)."""

    def __init__(self, max_load: Optional[float] = None, max_wait_s: float = 0.0, probe_s: float = 0.5,
                 window: Callable[[], CpuWindow] = CpuWindow, sleep: Callable[[float], None] = time.sleep):
        # nan compares false both ways: as --max-load it judged every figure reliable and wrote NaN
        # into the JSON; as --max-wait, a loaded machine would have been waited on for ever
        if max_load is not None and not (math.isfinite(max_load) and max_load >= 0):
            raise HarnessError(f"--max-load must be >= 0 and finite, got {max_load}")
        if not (math.isfinite(max_wait_s) and max_wait_s >= 0):
            raise HarnessError(f"--max-wait must be >= 0 and finite, got {max_wait_s}")
        self.max_load, self.max_wait_s, self.probe_s = max_load, max_wait_s, probe_s
        self.window, self.sleep = window, sleep

    def settle(self) -> dict:
        """Probe the other processes' load; while above max_load, keep probing until max_wait_s."""
        waited, other = 0.0, None
        while self.max_load is not None:
            w = self.window()
            self.sleep(self.probe_s)
            other = w.other_load()
            if other is None or other <= self.max_load or waited >= self.max_wait_s:
                break
            waited += self.probe_s
        return dict(loadavg_before=loadavg(), other_load_before=other, waited_s=waited)

    def judge(self, rec: dict) -> Tuple[Optional[bool], Optional[str]]:
        if self.max_load is None:
            return None, None
        over = [f"{label} {rec[key]:.2f}" for key, label in (("other_load_before", "before"), ("other_load", "during"))
                if rec.get(key) is not None and rec[key] > self.max_load]
        if not over:
            return True, None
        return False, f"other processes used {' and '.join(over)} cores (> {self.max_load:g})"

    def run(self, fn: Callable[[], object], retries: int = 1):
        """(fn(), load record) under `watch`; a run that other processes disturbed is made again,
        up to `retries` times, and the last one is kept (its record says how many it took)."""
        for attempt in range(retries + 1):
            with self.watch() as rec:
                out = fn()
            rec["attempts"] = attempt + 1
            if rec["reliable"] is not False:
                break
        return out, rec

    @contextlib.contextmanager
    def watch(self):
        """Settle, then yield the record; on exit it holds the load during and after the block."""
        rec = self.settle()
        w = self.window()
        yield rec
        rec.update(other_load=w.other_load(), loadavg_after=loadavg(), max_load=self.max_load)
        rec["reliable"], rec["why_unreliable"] = self.judge(rec)


@contextlib.contextmanager
def _quiet_stderr():
    """Kineto prints start/stop lines on fd 2 from C++; keep the bench output readable."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


def peak_memory_bytes(model: nn.Module, x: torch.Tensor, execution: Optional[str], policy) -> int:
    """Peak tensor bytes on the CPU during one eval forward, from torch.profiler's memory timeline."""
    from torch.profiler import ProfilerActivity, profile

    with routing_context(model, execution, policy), torch.no_grad():
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                                      record_shapes=True, with_stack=True) as prof:
            model(x)
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of a CUDA-only API
            path = os.path.join(d, "timeline.json")
            prof.export_memory_timeline(path, device="cpu")
            with open(path) as f:
                _, sizes = json.load(f)
    return int(max((sum(s) for s in sizes), default=0))


def conditions(device: str, dtype: torch.dtype) -> dict:
    import platform
    from ..records import git_label
    return dict(device=device, dtype=str(dtype).replace("torch.", ""), threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(),
                cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                loadavg_1m=loadavg(), allocator=runtime.allocator_settings()["allocator"],
                git_sha=git_label())
