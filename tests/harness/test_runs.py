"""End-to-end runs through the CLI: the record, determinism, resume, eval-only, imagenet layout."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from harness_testutils import TINY_MODEL, assert_one_line_error, read_jsonl, run_cli, tiny_run_args, write_imagefolder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORD_FIELDS = {"model", "suite", "seed", "task", "metrics", "routing", "throughput", "flops", "params",
                 "train", "config", "env", "command", "created"}


def test_record_fields(trained_checkpoint):
    _, rec = trained_checkpoint
    assert RECORD_FIELDS <= set(rec)
    assert (rec["model"], rec["suite"], rec["seed"], rec["task"]) == (TINY_MODEL, "mnist5k", 0, "image-classification")
    assert 0 < rec["flops"]["executed_gflops"] <= rec["flops"]["dense_gflops"]  # details: test_flops_cmd
    assert set(rec["metrics"]) == {"top1", "top5", "loss"}
    assert 0 <= rec["metrics"]["top1"] <= rec["metrics"]["top5"] <= 100
    import zoo
    assert rec["params"] == sum(p.numel() for p in zoo.create_model(TINY_MODEL, num_classes=10, in_chans=1, img_size=28).parameters())
    # routing: one entry per router, shares of the routes taken over the eval set
    assert rec["routing"], "dhvn_nano routes per sample"
    for layer, r in rec["routing"].items():
        assert r["granularity"] == "sample" and r["choices"] == ["conv", "transformer", "both"]
        assert sum(r["share"].values()) == pytest.approx(1.0)
        # the entropy is that of the shares recorded beside it; N * sum f P cannot exceed N
        shares = torch.tensor([v for v in r["share"].values() if v > 0], dtype=torch.float64)
        assert r["entropy"] == pytest.approx(float(-(shares * shares.log()).sum()), abs=1e-6)
        assert 0 <= r["load_balance"] <= len(r["choices"]) + 1e-6
    tp = rec["throughput"]
    assert tp["samples_per_s"] > 0 and tp["batch_size"] == 30 and tp["device"] == "cpu"
    # the threads the eval ran with (the session fixture may have run before another test changed
    # this process's thread count, so compare with the record's own environment)
    assert tp["dtype"] == "float32" and tp["threads"] == rec["env"]["threads"] >= 1
    assert tp["load_avg_1m"] is None or tp["load_avg_1m"] >= 0
    train = rec["train"]
    assert train["epochs"] == 2 and train["iters"] == 8 and train["batch_size"] == 16 and train["wall_s"] > 0
    from mmengine.config import Config
    from harness.suites import get_suite
    assert train["lr"] == pytest.approx(Config.fromfile(get_suite("mnist5k").config).optim_wrapper.optimizer.lr)
    resolved = rec["config"]["resolved"]
    assert resolved["model"]["arch"] == TINY_MODEL and resolved["randomness"]["seed"] == 0
    # the hash leaves out where the run wrote and how it was started, which the record keeps
    volatile = ("experiment_name", "work_dir", "resume", "load_from", "console")
    assert "work_dir" in resolved and "console" in resolved
    stable = {k: v for k, v in resolved.items() if k not in volatile}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert rec["config"]["sha256"] == digest
    env = rec["env"]
    for key in ("git_sha", "git_dirty", "python", "torch", "timm", "mmengine", "device", "cpu", "threads"):
        assert key in env
    assert env["torch"] == torch.__version__
    cmd = rec["command"]
    assert cmd[:4] == ["python", "-m", "harness", "run"] and cmd[-4:] == ["--models", TINY_MODEL, "--seeds", "0"]
    created = dt.datetime.fromisoformat(rec["created"].replace("Z", "+00:00"))
    assert created.tzinfo is not None and rec["created"].endswith("Z")


def test_same_seed_same_metrics(tmp_path, capsys, trained_checkpoint):
    _, first = trained_checkpoint
    code, _, err = run_cli(tiny_run_args(tmp_path, "--epochs", "2"), capsys)
    assert code == 0, err
    (again,) = read_jsonl(tmp_path / "results.jsonl")
    assert again["metrics"] == first["metrics"]
    assert again["routing"] == first["routing"]
    assert again["config"]["resolved"]["randomness"] == first["config"]["resolved"]["randomness"]


def _state(path):
    from harness.engine.checkpoint import load_checkpoint_file
    return load_checkpoint_file(str(path))


def test_resume_equals_uninterrupted(tmp_path, capsys):
    """2 epochs, stop; --resume to 3 epochs == 3 epochs straight (weights, tau, metrics)."""
    full, split = tmp_path / "full", tmp_path / "split"
    code, _, err = run_cli(tiny_run_args(full, "--epochs", "3", seed=5), capsys)
    assert code == 0, err
    code, out, err = run_cli(tiny_run_args(split, "--epochs", "3", seed=5, cfg=["stop_after.epochs=2"]), capsys)
    assert code == 0, err
    assert "stopped after" in out and read_jsonl(split / "results.jsonl") == []  # no record for a partial run
    assert sorted(os.listdir(split / "work")).count("epoch_2.pth") == 1
    meta = _state(split / "work" / "epoch_2.pth")["meta"]
    saved, first_wall = meta["tau_schedule"], meta["train_wall_s"]
    assert meta["train_sessions"] == 1 and first_wall > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_cli(tiny_run_args(split, "--epochs", "3", "--resume", seed=5), capsys)
    assert code == 0, err
    # the fit check loads into a meta-device copy without a warning per tensor
    assert not [w for w in caught if "meta parameter" in str(w.message)]
    (a,), (b,) = read_jsonl(full / "results.jsonl"), read_jsonl(split / "results.jsonl")
    assert a["metrics"] == b["metrics"] and a["routing"] == b["routing"]
    # the resumed record's wall-clock counts both sessions
    assert a["train"]["sessions"] == 1 and b["train"]["sessions"] == 2
    assert b["train"]["wall_s"] > first_wall
    # other work dirs, resume and load_from: the same run, so the same config hash
    assert a["config"]["resolved"]["work_dir"] != b["config"]["resolved"]["work_dir"]
    assert b["config"]["resolved"]["resume"] is True
    assert a["config"]["sha256"] == b["config"]["sha256"]
    assert a["train"]["iters"] == b["train"]["iters"] == 12
    sa, sb = _state(full / "work" / "epoch_3.pth"), _state(split / "work" / "epoch_3.pth")
    for k, v in sa["state_dict"].items():
        assert torch.equal(v, sb["state_dict"][k]), k
    # the temperature schedule continued exactly: same tau at the end, and the resumed run
    # started from the tau the interrupted one had saved
    assert sa["meta"]["tau_schedule"] == sb["meta"]["tau_schedule"]
    assert saved["start"] == 1.0 and saved["end"] == 0.5 and 0.5 < saved["tau"] < 1.0
    routers_tau = {k: float(v) for k, v in sb["state_dict"].items() if k.endswith(".tau")}
    assert routers_tau and all(t == pytest.approx(sb["meta"]["tau_schedule"]["tau"]) for t in routers_tau.values())


def test_eval_only_reproduces_the_trained_metrics(tmp_path, capsys, trained_checkpoint):
    work, rec = trained_checkpoint
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(work / "epoch_2.pth")), capsys)
    assert code == 0, err
    (ev,) = read_jsonl(tmp_path / "results.jsonl")
    assert ev["metrics"] == rec["metrics"]
    assert ev["train"]["eval_only"] is True and ev["train"]["checkpoint"].endswith("epoch_2.pth")


def test_imagenet_suite_on_an_imagefolder_tree(tmp_path, capsys):
    write_imagefolder(tmp_path / "imagenet")
    results = tmp_path / "imagenet.jsonl"
    code, out, err = run_cli([
        "run", "--models", "dhvn_nano", "dhvn_nano_st*", "--suite", "imagenet", "--data-root", str(tmp_path / "imagenet"),
        # 6 epochs: the recipe warms up for 5 (30 digits, batch 10: 3 steps an epoch)
        "--epochs", "6", "--batch-size", "10", "--model-kwargs", "img_size=32", "num_classes=10",
        "--work-dir", str(tmp_path / "w"), "--results", str(results),
        "--cfg-options", "train_dataloader.num_workers=0", "test_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False", "test_dataloader.persistent_workers=False",
        "test_dataloader.batch_size=10"], capsys)
    assert code == 0, err
    recs = read_jsonl(results)
    assert [r["model"] for r in recs] == ["dhvn_nano", "dhvn_nano_static"]
    for r in recs:
        # the raw weights' figures and the EMA's (the DeiT recipe keeps a model EMA)
        assert r["suite"] == "imagenet" and set(r["metrics"]) == {
            "top1", "top5", "loss", "ema_top1", "ema_top5", "ema_loss"}
        # 10 classes (ILSVRC's 1000 is the config's; the folders must agree), 32x32 RGB, timm transforms
        assert r["config"]["resolved"]["model"]["arch_kwargs"]["num_classes"] == 10
        assert r["config"]["resolved"]["test_dataloader"]["dataset"]["img_size"] == 32
        assert r["data"]["layout"] == "imagefolder" and r["data"]["test_items"] == 30
    assert recs[1]["routing"] == {}  # the static form has no routers


def test_timm_peer_and_lm_runs(tmp_path, capsys):
    # a timm ViT adapted to 28x28 grey digits: the suite passes img_size and in_chans
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "2", "--model-kwargs", "patch_size=4",
                                         model="timm:test_vit"), capsys)
    assert code == 0, err
    (rec,) = read_jsonl(tmp_path / "results.jsonl")
    assert rec["model"] == "timm:test_vit" and rec["routing"] == {} and rec["params"] > 0
    lm = tmp_path / "lm.jsonl"
    code, _, err = run_cli(["run", "--models", "exp11_dynamic_tiny", "--suite", "pydocs", "--max-iters", "2",
                            "--batch-size", "2", "--model-kwargs", "max_seq_len=64", "--work-dir",
                            str(tmp_path / "lmw"), "--results", str(lm), "--cfg-options",
                            "test_dataloader.dataset.limit=8", "test_dataloader.batch_size=4"], capsys)
    assert code == 0, err
    (rec,) = read_jsonl(lm)
    m = rec["metrics"]
    assert set(m) == {"loss", "perplexity", "bits_per_byte"}
    assert m["perplexity"] == pytest.approx(torch.tensor(m["loss"]).exp().item(), rel=1e-6)
    assert m["bits_per_byte"] == pytest.approx(m["loss"] / torch.log(torch.tensor(2.0)).item(), rel=1e-6)
    assert rec["throughput"]["tokens_per_s"] > 0
    assert rec["data"]["python"] and len(rec["data"]["corpus_sha256"]) == 64
    assert rec["config"]["resolved"]["test_dataloader"]["dataset"]["max_seq_len"] == 64
    assert {r["granularity"] for r in rec["routing"].values()} == {"token"}


def test_list_and_leaderboard_commands(tmp_path, capsys, trained_checkpoint):
    code, out, _ = run_cli(["list", "dhvn_nano*", "exp11_*_tiny"], capsys)
    assert code == 0
    for text in ("dhvn_nano_static", "exp11_dynamic_tiny", "causal-lm", "token", "static", "mnist5k", "pydocs",
                 "timm:NAME"):
        assert text in out
    _, rec = trained_checkpoint
    from leaderboard.store import append_record
    results, page = tmp_path / "results", tmp_path / "LEADERBOARD.md"
    append_record(results / "mnist5k.jsonl", rec)
    code, out, err = run_cli(["leaderboard", "--results-dir", str(results), "--out", str(page)], capsys)
    assert code == 0, err
    assert TINY_MODEL in page.read_text()
    code, _, _ = run_cli(["leaderboard", "--check", "--results-dir", str(results), "--out", str(page)], capsys)
    assert code == 0
    page.write_text(page.read_text() + "\nhand edit\n")
    code, _, err = run_cli(["leaderboard", "--check", "--results-dir", str(results), "--out", str(page)], capsys)
    assert code == 1 and "out of date" in err


def test_amp_on_cpu_trains_and_evaluates_in_bfloat16(tmp_path, capsys):
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "2", "--amp"), capsys)
    assert code == 0, err
    (rec,) = read_jsonl(tmp_path / "results.jsonl")
    assert rec["throughput"]["dtype"] == "bfloat16" and rec["train"]["amp"] is True
    assert rec["config"]["resolved"]["optim_wrapper"]["type"] == "CPUAutocastOptimWrapper"
    assert rec["metrics"]["loss"] == rec["metrics"]["loss"]  # finite, recorded


def test_embedded_job_gives_every_model_of_a_suite_the_same_budget(capsys):
    """The job passes no recipe of its own (the suite config holds it), so no model can get a
    different budget, lr or schedule; one run per (model, seed), then the budget curves."""
    from harness.readme_job import budget_curves, jobs
    JOBS, BUDGET_CURVES = jobs(), budget_curves()
    code, out, _ = run_cli(["embedded", "--dry-run"], capsys)
    assert code == 0
    cmds = [line.split() for line in out.splitlines() if line.startswith("python -m harness run")]
    train = [c for c in cmds if "--eval-only" not in c]
    evals = [c for c in cmds if "--eval-only" in c]
    assert len(train) == 3 * sum(len(models) for _, models in JOBS)
    assert len(evals) == 3 * len(BUDGET_CURVES)
    for cmd in train:
        assert not {"--max-iters", "--epochs", "--batch-size", "--lr", "--cfg-options"} & set(cmd)
    seen = {(c[c.index("--models") + 1], c[c.index("--seeds") + 1]) for c in train}
    assert seen == {(m, s) for _, models in JOBS for m in models for s in "012"}
    for cmd in evals:
        model = cmd[cmd.index("--models") + 1]
        at = cmd.index("--flops-budget") + 1
        budgets = cmd[at:at + len(BUDGET_CURVES[model])]
        assert [float(b) for b in budgets] == list(BUDGET_CURVES[model])


def test_torchrun_two_cpu_processes_write_one_record(tmp_path):
    """DDP through mmengine's launcher (gloo on CPU) and DefaultSampler: one record, full eval set."""
    results = tmp_path / "r.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         "-m", "harness", "run", "--models", TINY_MODEL, "--suite", "mnist5k", "--max-iters", "2",
         "--batch-size", "8", "--launcher", "pytorch", "--results", str(results), "--work-dir",
         str(tmp_path / "w"), "--cfg-options", "train_dataloader.dataset.limit=64",
         "test_dataloader.dataset.limit=60", "test_dataloader.batch_size=10"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rec,) = read_jsonl(results)
    assert rec["data"]["test_items"] == 60 and rec["config"]["resolved"]["launcher"] == "pytorch"
    train = rec["train"]
    assert train["world_size"] == 2 and train["nnodes"] == 1 and train["nproc_per_node"] == 2
    assert train["per_rank_batch_size"] == 8 and train["global_batch_size"] == 16
    # the recorded command starts the same launch: torchrun with 2 processes, the same per-rank batch
    cmd = rec["command"]
    assert cmd[:3] == ["torchrun", "--nnodes=1", "--nproc_per_node=2"] and cmd[3:6] == ["-m", "harness", "run"]
    assert cmd[cmd.index("--batch-size") + 1] == "8" and cmd[cmd.index("--launcher") + 1] == "pytorch"


def test_a_single_process_record_says_world_size_1(trained_checkpoint):
    _, rec = trained_checkpoint
    assert rec["train"]["world_size"] == 1 and rec["train"]["global_batch_size"] == rec["train"]["batch_size"]
    assert rec["command"][:4] == ["python", "-m", "harness", "run"]


@pytest.mark.parametrize("launcher, env, fragments", [
    ("pytorch", {}, ["--launcher pytorch needs RANK, WORLD_SIZE", "torchrun"]),
    ("slurm", {}, ["--launcher slurm needs SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST", "srun"]),
    ("slurm", {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_NODELIST": "node1"},
     ["scontrol show hostname", "not on PATH", "MASTER_ADDR"]),
])
def test_launcher_without_its_environment_is_one_line(launcher, env, fragments, tmp_path, capsys, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
                "SLURM_NODELIST"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol
    code, _, err = run_cli(tiny_run_args(tmp_path, "--launcher", launcher), capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "work").exists()


def test_slurm_launch_on_cpu_from_srun_variables(tmp_path):
    """What srun sets for one task: the gloo group starts from the slurm variables, as mmengine's
    slurm path would set them on CUDA, and the record's command is an srun line."""
    results = tmp_path / "r.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "RANK", "WORLD_SIZE"))}
    env.update(SLURM_PROCID="0", SLURM_NTASKS="1", SLURM_NODELIST="localhost", SLURM_LOCALID="0",
               SLURM_NNODES="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29541")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--models", TINY_MODEL, "--suite", "mnist5k", "--max-iters", "2",
         "--batch-size", "8", "--launcher", "slurm", "--results", str(results), "--work-dir", str(tmp_path / "w"),
         "--cfg-options", "train_dataloader.dataset.limit=32", "test_dataloader.dataset.limit=20",
         "test_dataloader.batch_size=10"], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rec,) = read_jsonl(results)
    assert rec["train"]["launcher"] == "slurm" and rec["train"]["world_size"] == 1
    assert rec["command"][:3] == ["srun", "--nodes=1", "--ntasks=1"] and rec["command"][3:6] == ["python", "-m", "harness"]


def test_training_logs_routing_shares_per_router(trained_checkpoint):
    """RoutingLogHook: each router's training route shares reach mmengine's scalar log."""
    work, _ = trained_checkpoint
    scalars = sorted(work.glob("*/vis_data/scalars.json"))
    assert scalars, f"no scalars.json under {work}"
    rows = [json.loads(line) for line in scalars[-1].read_text().splitlines() if line.strip()]
    train_rows = [r for r in rows if "loss" in r]
    assert train_rows
    import zoo
    model = zoo.create_model(TINY_MODEL, num_classes=10, in_chans=1, img_size=28)
    layers = {r.layer: r.choices for r in zoo.routing.routers(model)}
    for row in train_rows:
        for layer, choices in layers.items():
            shares = [row[f"routing/{layer}/{c}"] for c in choices]
            assert sum(shares) == pytest.approx(1.0) and all(0 <= s <= 1 for s in shares)
        assert 0.5 <= row["tau"] <= 1.0


def test_budget_curve_from_one_checkpoint(tmp_path, capsys, trained_checkpoint):
    """--eval-only --flops-budget: one record per budget, each at (about) its share of the full form's
    FLOPs on the calibration slice, and the leaderboard draws them as a curve, not as rows."""
    work, trained = trained_checkpoint
    ckpt = str(sorted(work.glob("*.pth"))[-1])
    code, _, _ = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", ckpt, "--flops-budget", "0.4", "1.0"), capsys)
    assert code == 0
    records = read_jsonl(tmp_path / "results.jsonl")
    assert [r["budget"]["target"] for r in records] == [0.4, 1.0]
    for r in records:
        assert abs(r["budget"]["calibration_fraction"] - r["budget"]["target"]) <= 0.05
        assert r["budget"]["calibration_split"] == "train" and r["static_form"] == "dhvn_nano_static"
    assert records[1]["flops"]["saved"] == pytest.approx(0.0, abs=1e-9)   # budget 1: the full form
    assert records[0]["flops"]["executed_gflops"] < records[1]["flops"]["executed_gflops"]
    from leaderboard.render import build_leaderboard
    markdown, _ = build_leaderboard(tmp_path)
    assert "compute-budget curves" in markdown and "| dhvn_nano " in markdown


def test_console_is_short_unless_verbose(tmp_path, capsys):
    """One line per logger interval and the result; mmengine's tables only with --verbose. The log
    file in the work dir keeps everything either way."""
    args = ("--max-iters", "4", "--cfg-options", "default_hooks.logger.interval=2")
    code, out, err = run_cli(tiny_run_args(tmp_path / "q", *args), capsys)
    assert code == 0, err
    lines = [ln for ln in (out + err).splitlines() if ln.strip() and "task/s" not in ln and "ETA" not in ln]
    progress = [ln for ln in lines if "iter " in ln and "/4" in ln]
    assert [ln.split("iter ")[1].split()[0] for ln in progress] == ["2/4", "4/4"]
    assert all(len(ln) < 200 for ln in progress) and "loss" in progress[0] and "eta" in progress[0]
    assert len(lines) <= 5, "\n".join(lines)   # 2 progress lines, the result, the append
    assert "System environment" not in out and "Hooks will be executed" not in out
    (log,) = (tmp_path / "q" / "work").glob("*/*.log")
    assert "System environment" in log.read_text() and "Iter(train) [4/4]" in log.read_text()
    code, out, err = run_cli(tiny_run_args(tmp_path / "v", *args, "--verbose"), capsys)
    assert code == 0, err
    assert "System environment" in out and "Iter(train) [4/4]" in out
    (quiet,), (verbose,) = read_jsonl(tmp_path / "q" / "results.jsonl"), read_jsonl(tmp_path / "v" / "results.jsonl")
    assert quiet["config"]["sha256"] == verbose["config"]["sha256"]  # the console is not the run
    assert "--verbose" in verbose["command"] and "--verbose" not in quiet["command"]
