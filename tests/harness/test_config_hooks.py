"""A config of one's own cannot lose the harness's hooks (docs/DESIGN.md, "Hooks a config cannot
lose"): its `custom_hooks = [...]` adds to them, a hook of the same type replaces the harness's one
with a one-line note, its `work_dir` is honoured, and its `model.arch` serves without --models.
Each run goes through the real CLI at 2 iterations on a few dozen digits."""
from __future__ import annotations

import glob
import os

from harness_testutils import TINY_DATA, assert_one_line_error, read_jsonl, run_cli

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "harness", "configs")
HARNESS_HOOKS = ("NaNGuardHook", "SafeCheckpointHook", "RNGStateHook", "TrainWallClockHook", "EvalProgressHook",
                 "ConsoleProgressHook", "TauScheduleHook", "RoutingLogHook", "AuxWeightScheduleHook",
                 "AtomicCheckpointHook")


def _config(tmp_path, body: str, name="my_cfg.py") -> str:
    path = tmp_path / name
    path.write_text(f"_base_ = [{os.path.join(CONFIGS, 'mnist5k.py')!r}]\n"
                    "train_dataloader = dict(batch_size=16)\n" + body)
    return str(path)


def _hooks_in_log(work_dir) -> dict:
    """stage -> the hook names mmengine lists for it in the run's log file."""
    (log,) = glob.glob(os.path.join(work_dir, "*", "*.log"))
    table = open(log).read().split("Hooks will be executed in the following order:", 1)[1]
    stages, stage = {}, None
    for line in table.splitlines()[1:]:
        if line.rstrip().endswith(":") and "(" not in line:
            stage = stages.setdefault(line.strip(" :"), [])
        elif line.strip().startswith("(") and stage is not None:
            stage.append(line.split()[-1])
        elif line.strip() and not line.strip().startswith("-"):
            break
    return stages


def test_custom_hooks_add_to_the_harness_hooks_and_the_config_names_model_and_work_dir(tmp_path, capsys):
    work = tmp_path / "from_config"
    cfg = _config(tmp_path, f"model = dict(arch='dhvn_nano_ccc')\nwork_dir = {str(work)!r}\n"
                            "custom_hooks = [dict(type='EmptyCacheHook')]\n")
    results = tmp_path / "r.jsonl"
    code, out, err = run_cli(["run", "--config", cfg, "--max-iters", "2", "--results", str(results),
                              "--cfg-options", *TINY_DATA], capsys)
    assert code == 0, err
    (rec,) = read_jsonl(results)
    assert rec["model"] == "dhvn_nano_ccc"  # model.arch, no --models
    assert rec["command"][rec["command"].index("--models") + 1] == "dhvn_nano_ccc"
    assert os.path.isfile(work / "iter_2.pth")  # the config's work_dir
    hooks = {h for stage in _hooks_in_log(work).values() for h in stage}
    assert "EmptyCacheHook" in hooks and set(HARNESS_HOOKS) <= hooks, hooks
    assert "runs in place of" not in err


def test_a_hook_of_the_same_type_replaces_the_harness_one_with_a_note(tmp_path, capsys):
    cfg = _config(tmp_path, "custom_hooks = [dict(type='TauScheduleHook', start=2.0, end=1.0)]\n")
    code, out, err = run_cli(["run", "--config", cfg, "--models", "dhvn_nano", "--seeds", "0", "1",
                              "--max-iters", "2", "--work-dir", str(tmp_path / "w"), "--no-record",
                              "--cfg-options", *TINY_DATA], capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "runs in place of" in line]
    assert notes == ["harness: custom_hooks' TauScheduleHook runs in place of the harness's "
                     "default_hooks.tau_schedule (tune that one by key instead to keep a single one)"]
    for seed in (0, 1):
        stages = _hooks_in_log(tmp_path / "w" / "dhvn_nano" / f"seed{seed}")
        hooks = [h for stage in stages.values() for h in stage]
        assert "NaNGuardHook" in hooks and "RoutingLogHook" in hooks
        # one TauScheduleHook (the config's) in each stage it acts in
        assert "TauScheduleHook" in stages["before_train_iter"]
        assert all(stage.count("TauScheduleHook") <= 1 for stage in stages.values()), stages


def test_resolved_hooks_without_a_suite_base_and_dropped_on_purpose(tmp_path):
    from mmengine.config import Config

    from harness.engine.hook_set import harness_hooks, keep_harness_hooks
    cfg = Config(dict(custom_hooks=[dict(type="NaNGuardHook")], default_hooks=dict(logger=dict(interval=5))))
    notes = keep_harness_hooks(cfg)
    want = set(harness_hooks()) - {"nan_guard"}
    assert set(cfg.default_hooks) == want and cfg.default_hooks.logger == dict(interval=5)
    assert len(notes) == 1 and "NaNGuardHook" in notes[0]
    # `default_hooks.routing_log=None` drops it (mmengine would assert on a None it does not know)
    cfg = Config(dict(default_hooks=dict(routing_log=None, timer=None)))
    keep_harness_hooks(cfg)
    assert "routing_log" not in cfg.default_hooks and cfg.default_hooks.timer is None


def test_no_models_and_no_config_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["run", "--suite", "mnist5k"], capsys)
    assert_one_line_error(code, err, "run needs --models (or a --config whose model.arch names one)")
