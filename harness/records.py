"""The results record: what ran, on what, with which config, and what it measured.

Everything here is measured or looked up; nothing is estimated. `flops` is counted by
`harness.measure.executed_flops.measure_flops` on a few evenly spaced eval samples (the task's
`flops_items`, harness/tasks.py); it is null only when it was not measured.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from functools import lru_cache
from typing import List, Optional

import torch

__all__ = ["build_record", "config_sha256", "env_info", "git_state", "git_label", "cpu_model",
           "jsonable_config", "VOLATILE_CONFIG_KEYS"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# results, the generated page and the generated pictures change during a benchmark run (the
# embedded job moves the results aside, the leaderboard redraws its figures); no code is dirty
# (benchmarks/perf_report.py rewrites leaderboard/perf as it goes)
_NOT_CODE = (":!leaderboard/results", ":!leaderboard/LEADERBOARD.md", ":!leaderboard/figures",
             ":!leaderboard/perf", ":!docs/figures")


def jsonable_config(cfg_dict: dict) -> dict:
    """The resolved config as plain JSON types (tuples become lists, like a JSON round trip)."""
    return json.loads(json.dumps(cfg_dict, sort_keys=True, default=str))


# where a run writes and how it was started, not what it computes: identical runs share a hash
VOLATILE_CONFIG_KEYS = ("experiment_name", "work_dir", "resume", "load_from", "console")


def config_sha256(resolved: dict) -> str:
    """SHA-256 of the resolved config without VOLATILE_CONFIG_KEYS (the record keeps them)."""
    stable = {k: v for k, v in resolved.items() if k not in VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def git_state(root: str = REPO_ROOT) -> dict:
    def git(*args) -> Optional[str]:
        try:
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                                  timeout=20, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".", *_NOT_CODE)
    return dict(git_sha=sha.strip() if sha else None,
                git_dirty=None if status is None else bool(status.strip()))


def git_label(root: str = REPO_ROOT) -> Optional[str]:
    """Short sha of HEAD, with '+dirty' when the code differs from it (as `git_state` decides)."""
    state = git_state(root)
    if not state["git_sha"]:
        return None
    return state["git_sha"][:7] + ("+dirty" if state["git_dirty"] else "")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def env_info(device: str) -> dict:
    import mmengine
    import timm
    info = git_state()
    info.update(python=platform.python_version(), torch=torch.__version__, timm=timm.__version__,
                mmengine=mmengine.__version__, device=device, cpu=cpu_model(),
                threads=torch.get_num_threads())
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_record(*, model: str, suite: str, seed: int, task: str, metrics: dict, routing: dict,
                 throughput: dict, params: int, train: dict, resolved_config: dict, command: List[str],
                 device: str, data: Optional[dict] = None, flops: Optional[dict] = None,
                 static_form: Optional[str] = None, budget: Optional[dict] = None,
                 family: Optional[str] = None, static_plans: Optional[List[str]] = None) -> dict:
    record = dict(
        model=model, suite=suite, seed=int(seed), task=task, metrics=metrics, routing=routing,
        throughput=throughput,
        flops=flops,  # measured by harness.measure.executed_flops.measure_flops; None: not measured
        params=int(params), train=train,
        config=dict(resolved=resolved_config, sha256=config_sha256(resolved_config)),
        env=env_info(device), data=data or {}, command=list(command), created=utc_now(),
    )
    if family is not None:
        record["family"] = family  # zoo.model_info's family ("timm" for timm peers)
    if static_form is not None:
        record["static_form"] = static_form  # the routed model's static comparator (zoo.model_info)
    if static_plans:
        record["static_plans"] = list(static_plans)  # its static per-layer plans (zoo.model_info)
    if budget is not None:
        record["budget"] = budget  # evaluated under zoo.routing.flops_budget(target): a point of a budget curve
    return record
