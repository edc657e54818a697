"""Which routing mode trained each record (issue 24): `--cfg-options model.arch_kwargs.router.*` (or a
config's own `router=dict(...)`) selects sparse or fixed-capacity training, the record's
`train.routing_mode` says which mode trained the weights (an eval-only record: its checkpoint's),
a bad value is one line before any work, and a run resumes only in its own mode."""
from __future__ import annotations

import os

import pytest

from harness_testutils import assert_one_line_error, read_jsonl, run_cli, tiny_run_args

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "harness", "configs")
SPARSE_CAP = ["model.arch_kwargs.router.train_execution=sparse", "model.arch_kwargs.router.capacity=0.5"]


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    """A tiny dhvn_nano run trained sparse at capacity 0.5 through --cfg-options: (work dir, record)."""
    from harness.cli import main
    tmp = tmp_path_factory.mktemp("sparse")
    assert main(tiny_run_args(tmp, "--max-iters", "3", cfg=SPARSE_CAP)) == 0
    (record,) = read_jsonl(tmp / "results.jsonl")
    return tmp / "work", record


def test_cfg_options_select_the_mode_and_the_record_says_it(sparse_run):
    work, record = sparse_run
    assert record["train"]["routing_mode"] == {"train_execution": "sparse", "capacity": 0.5}
    assert record["config"]["resolved"]["model"]["arch_kwargs"]["router"] == {"train_execution": "sparse",
                                                                              "capacity": 0.5}
    # the network that trained had those routers: its checkpoint says so too
    from harness.engine.checkpoint import load_checkpoint_file
    ckpt = load_checkpoint_file(str(work / "iter_3.pth"))
    assert ckpt["meta"]["routing_mode"] == {"train_execution": "sparse", "capacity": 0.5}


def test_a_default_run_records_dense_and_a_static_model_null(trained_checkpoint, tmp_path, capsys):
    _, record = trained_checkpoint
    assert record["train"]["routing_mode"] == {"train_execution": "dense", "capacity": None}
    results = tmp_path / "r.jsonl"
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "2", model="dhvn_nano_ccc", results=results,
                                         cfg=SPARSE_CAP), capsys)
    assert code == 0, err
    # the plan has no routers: the settings build it unchanged, and there is no mode to record
    assert read_jsonl(results)[0]["train"]["routing_mode"] is None


def test_eval_only_records_the_mode_that_trained_the_checkpoint(sparse_run, tmp_path, capsys):
    work, _ = sparse_run
    results = tmp_path / "r.jsonl"
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(work / "iter_3.pth"),
                                         results=results), capsys)   # no router settings on this command
    assert code == 0, err
    (record,) = read_jsonl(results)
    assert record["train"]["eval_only"] is True
    assert record["train"]["routing_mode"] == {"train_execution": "sparse", "capacity": 0.5}


def test_a_checkpoint_from_before_the_field_reads_as_dense():
    import zoo
    from harness.engine.routing_mode import checkpoint_routing_mode
    assert checkpoint_routing_mode({"iter": 400}, zoo.create_model("dhvn_nano")) == {"train_execution": "dense",
                                                                                     "capacity": None}
    assert checkpoint_routing_mode(None, zoo.create_model("dhvn_nano_ccc")) is None


def test_resume_in_another_mode_is_one_line(sparse_run, tmp_path, capsys):
    work, _ = sparse_run
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "3", "--resume", str(work / "iter_3.pth")),
                           capsys)
    assert_one_line_error(code, err, "routing mode sparse, capacity 0.5", "asks for dense")


@pytest.mark.parametrize("option, fragment", [
    ("model.arch_kwargs.router.train_execution=fast", "train_execution"),
    ("model.arch_kwargs.router.capacity=1.5", "capacity"),
    ("model.arch_kwargs.router.train_exec=sparse", "train_exec"),
])
@pytest.mark.parametrize("model", ["dhvn_nano", "timm:resnet18"])
def test_a_bad_setting_is_one_line_before_any_work(option, fragment, model, tmp_path, capsys):
    """A timm peer has no routers to take the settings, yet a mistake in them is refused the same way."""
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "2", model=model, cfg=[option]), capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "work").exists()


def test_a_timm_peer_runs_beside_router_settings(tmp_path, capsys):
    from harness.engine.wrappers import build_network
    net = build_network("timm:resnet18", num_classes=10, in_chans=1, router=dict(train_execution="sparse"))
    assert type(net).__name__ == "ResNet"


def test_an_own_config_without_router_settings_still_takes_them(tmp_path, capsys):
    """A config that replaces arch_kwargs whole (no `router` key) gets an empty one, so the option lands."""
    cfg = tmp_path / "my_cfg.py"
    cfg.write_text(f"_base_ = [{os.path.join(CONFIGS, 'mnist5k.py')!r}]\n"
                   "model = dict(arch_kwargs=dict(_delete_=True, num_classes=10, in_chans=1, img_size=28))\n")
    results = tmp_path / "r.jsonl"
    code, _, err = run_cli(["run", "--config", str(cfg), "--models", "dhvn_nano", "--max-iters", "2",
                            "--batch-size", "16", "--work-dir", str(tmp_path / "w"), "--results", str(results),
                            "--cfg-options", "train_dataloader.dataset.limit=32", "test_dataloader.dataset.limit=20",
                            "model.arch_kwargs.router.train_execution=sparse"], capsys)
    assert code == 0, err
    assert read_jsonl(results)[0]["train"]["routing_mode"] == {"train_execution": "sparse", "capacity": None}


def test_flops_and_bench_load_a_fixed_capacity_checkpoint_as_it_trained(sparse_run, tmp_path, capsys):
    """Its routers' eval thresholds are weights: the commands that load weights build them too."""
    work, _ = sparse_run
    ckpt = str(work / "iter_3.pth")
    code, out, err = run_cli(["flops", "--models", "dhvn_nano", "--suite", "mnist5k", "--checkpoint", ckpt,
                              "--limit", "8", "--json"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["bench", "--models", "dhvn_nano", "--checkpoint", ckpt, "--batch-size", "4",
                              "--warmup", "0", "--iters", "1", "--json"], capsys)
    assert code == 0, err


def test_evaluating_a_checkpoint_in_another_mode_is_one_line(sparse_run, tmp_path, capsys):
    work, _ = sparse_run
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(work / "iter_3.pth"),
                                         cfg=["model.arch_kwargs.router.capacity=0.25"]), capsys)
    assert_one_line_error(code, err, "trained with router capacity=0.5", "this run sets capacity=0.25")
    assert not (tmp_path / "results.jsonl").exists()
