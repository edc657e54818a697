"""Every bad input ends as one line on stderr, exit status 2, no traceback, and no record."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from harness_testutils import TINY_MODEL, assert_one_line_error, read_jsonl, run_cli, tiny_run_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pattern_matching_nothing_lists_close_names(tmp_path, capsys):
    code, _, err = run_cli(tiny_run_args(tmp_path, model="dhvn_nan"), capsys)
    assert_one_line_error(code, err, "no model matches 'dhvn_nan'", "closest:", "dhvn_nano")
    assert not (tmp_path / "results.jsonl").exists()


def test_unknown_timm_model(tmp_path, capsys):
    code, _, err = run_cli(tiny_run_args(tmp_path, model="timm:resnet1234"), capsys)
    assert_one_line_error(code, err, "no model matches 'timm:resnet1234'", "timm:resnet")


def test_unknown_suite_lists_suites(tmp_path, capsys):
    code, _, err = run_cli(["run", "--models", TINY_MODEL, "--suite", "mnist", "--results",
                            str(tmp_path / "r.jsonl")], capsys)
    assert_one_line_error(code, err, "unknown suite 'mnist'", "mnist5k", "pydocs", "imagenet")


def test_task_mismatch_is_refused_before_any_work(tmp_path, capsys):
    code, out, err = run_cli(["run", "--models", "exp11_dynamic_tiny", "--suite", "mnist5k",
                              "--work-dir", str(tmp_path / "w"), "--results", str(tmp_path / "r.jsonl")], capsys)
    assert_one_line_error(code, err, "exp11_dynamic_tiny is a causal-lm model", "mnist5k")
    assert not (tmp_path / "w").exists()  # no runner was built
    code, _, err = run_cli(["run", "--models", "timm:resnet18", "--suite", "pydocs",
                            "--results", str(tmp_path / "r.jsonl")], capsys)
    assert_one_line_error(code, err, "timm:resnet18 is a image-classification model", "pydocs")


@pytest.mark.parametrize("suite", ["imagenet", "imagefolder"])
def test_missing_data_root(tmp_path, capsys, suite):
    code, _, err = run_cli(["run", "--models", TINY_MODEL, "--suite", suite], capsys)
    assert_one_line_error(code, err, "needs --data-root", "train/")
    missing = tmp_path / "nope"
    code, _, err = run_cli(["run", "--models", TINY_MODEL, "--suite", suite, "--data-root", str(missing),
                            "--results", str(tmp_path / "r.jsonl")], capsys)
    assert_one_line_error(code, err, str(missing), "does not exist", "ImageFolder")


def test_empty_data_root(tmp_path, capsys):
    (tmp_path / "data" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "val" / "cat").mkdir(parents=True)
    code, _, err = run_cli(["run", "--models", TINY_MODEL, "--suite", "imagenet", "--data-root",
                            str(tmp_path / "data"), "--results", str(tmp_path / "r.jsonl")], capsys)
    assert_one_line_error(code, err, "no images under", str(tmp_path / "data" / "train"))
    code, _, err = run_cli(["run", "--models", TINY_MODEL, "--suite", "imagenet", "--data-root",
                            str(tmp_path), "--results", str(tmp_path / "r.jsonl")], capsys)
    assert_one_line_error(code, err, "no train/ and val/ folders under", str(tmp_path))
    assert not (tmp_path / "r.jsonl").exists()


def test_missing_text_root(tmp_path, capsys):
    (tmp_path / "corpus").mkdir()
    code, _, err = run_cli(["run", "--models", "exp11_baseline_tiny", "--suite", "text", "--data-root",
                            str(tmp_path / "corpus"), "--results", str(tmp_path / "r.jsonl")], capsys)
    assert_one_line_error(code, err, "no train*.txt and val*.txt files in", str(tmp_path / "corpus"))


def test_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "epoch_1.pth"
    bad.write_bytes(b"\x80\x04 this is not a checkpoint" * 10)
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(bad)), capsys)
    assert_one_line_error(code, err, "is corrupt or not a torch checkpoint", str(bad))
    assert not (tmp_path / "results.jsonl").exists()
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(tmp_path / "missing.pth")),
                           capsys)
    assert_one_line_error(code, err, "does not exist")


@pytest.mark.parametrize("extra, seed, fragments", [
    (["--lr", "-1"], 0, ["--lr must be a finite number > 0", "-1.0"]),
    (["--lr", "nan"], 0, ["--lr must be a finite number > 0"]),
    ([], -1, ["--seeds must lie in [0, 2**32)", "-1"]),
    (["--model-kwargs", "nosuchkey=1"], 0, ["cannot build dhvn_nano", "unknown field(s) nosuchkey", "valid keys"]),
    (["--model-kwargs", "depths=(1,)"], 0, ["cannot build dhvn_nano", "one entry per stage"]),
    (["--model-kwargs", "depths=(("], 0, ["cannot build dhvn_nano"]),   # not a literal: kept as text
])
def test_bad_run_settings_fail_before_training(extra, seed, fragments, tmp_path, capsys):
    code, _, err = run_cli(tiny_run_args(tmp_path, *extra, seed=seed), capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "results.jsonl").exists()
    assert not (tmp_path / "work").exists()  # nothing was built or trained


def test_resume_from_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(tiny_run_args(tmp_path, "--resume", str(tmp_path / "nope.pth")), capsys)
    assert_one_line_error(code, err, "does not exist", "nope.pth")
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "work").exists()


def test_leaderboard_on_a_missing_results_dir_writes_nothing(tmp_path, capsys):
    page = tmp_path / "LEADERBOARD.md"
    page.write_text("the committed page\n")
    for check in ([], ["--check"]):
        code, _, err = run_cli(["leaderboard", *check, "--results-dir", str(tmp_path / "typo"), "--out", str(page)],
                               capsys)
        assert_one_line_error(code, err, "results dir", "typo", "does not exist")
        assert page.read_text() == "the committed page\n"


@pytest.mark.parametrize("pattern, fragments", [("dhvx*", ["no model matches 'dhvx*'", "dhvn_nano"]),
                                                ("zzz*", ["no model matches 'zzz*'"])])
def test_list_pattern_matching_nothing_is_one_line(pattern, fragments, capsys):
    code, out, err = run_cli(["list", pattern], capsys)
    assert_one_line_error(code, err, *fragments)
    assert out == ""


def _truncated_checkpoint() -> bytes:
    import io
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(64, 64)}, "meta": {}}, buf)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize("content", [
    b"this is a text file, not a checkpoint\n" * 5,   # the weights-only unpickler raised IndexError
    b"",
    bytes(range(256)) * 4,
    b"\x80\x02}q\x00.",                                # a valid pickle of an empty dict
    _truncated_checkpoint(),
], ids=["text", "empty", "bytes", "empty-dict", "truncated"])
def test_any_unreadable_checkpoint_is_a_one_line_error(content, tmp_path, capsys):
    from harness.engine.checkpoint import load_checkpoint_file
    from harness.errors import HarnessError
    bad = tmp_path / "iter_3.pth"
    bad.write_bytes(content)
    with pytest.raises(HarnessError, match="checkpoint .*iter_3.pth (is corrupt or not a torch|is not an mmengine)"):
        load_checkpoint_file(str(bad))
    code, _, err = run_cli(["visualize", "--model", "dhvn_nano", "--suite", "mnist5k", "--checkpoint", str(bad),
                            "--out", str(tmp_path / "never")], capsys)
    assert_one_line_error(code, err, str(bad))
    assert not (tmp_path / "never").exists()


class Payload:  # a class no allowlist names: what an untrusted pickle would carry
    pass


class Shell:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/harness-test-pwned",))


def test_foreign_checkpoints(tmp_path, capsys):
    # weights of another architecture, in mmengine's layout
    other = tmp_path / "other.pth"
    torch.save({"meta": {}, "state_dict": torch.nn.Linear(3, 4).state_dict()}, other)
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(other)), capsys)
    assert_one_line_error(code, err, "does not fit dhvn_nano", "missing keys")
    # an object no allowlist covers: refused without unpickling it
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "payload": Payload()}, unsafe)
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(unsafe)), capsys)
    assert_one_line_error(code, err, "refused: the checkpoint", "names test_bad_input.Payload",
                          "which is not an allowed class")
    assert "weights_only=False" not in err and "corrupt" not in err
    # and the classic: a file whose unpickling would run a shell command
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": Shell()}, evil)
    if os.path.exists("/tmp/harness-test-pwned"):
        os.remove("/tmp/harness-test-pwned")
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(evil)), capsys)
    assert_one_line_error(code, err, f"refused: the checkpoint {evil} names posix.system, which is not an allowed class")
    assert not os.path.exists("/tmp/harness-test-pwned")
    # a plain tensor file is no mmengine checkpoint
    plain = tmp_path / "plain.pth"
    torch.save(torch.zeros(3), plain)
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(plain)), capsys)
    assert_one_line_error(code, err, "not an mmengine checkpoint")
    assert not (tmp_path / "results.jsonl").exists()


def test_checkpoint_with_a_bad_router_temperature(tmp_path, capsys, trained_checkpoint):
    from harness.engine.checkpoint import latest_checkpoint, load_checkpoint_file
    work, _ = trained_checkpoint
    ckpt = load_checkpoint_file(latest_checkpoint(str(work)))
    key = next(k for k in ckpt["state_dict"] if k.endswith(".tau"))
    ckpt["state_dict"][key] = torch.tensor(float("nan"))
    bad = tmp_path / "nan_tau.pth"
    torch.save(ckpt, bad)
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(bad)), capsys)
    assert_one_line_error(code, err, f"checkpoint {bad}", f"the state dict's {key} is nan",
                          "finite number > 0")
    assert not (tmp_path / "results.jsonl").exists()


def test_nan_loss_stops_and_names_the_iteration(tmp_path, capsys):
    # an absurd learning rate blows the weights up after the first update
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "6", "--lr", "1e30",
                                         cfg=["optim_wrapper.clip_grad=None"]), capsys)
    assert_one_line_error(code, err, "non-finite", "at iteration", "no result recorded")
    assert read_jsonl(tmp_path / "results.jsonl") == []


def test_bad_cfg_option(tmp_path, capsys):
    code, _, err = run_cli(tiny_run_args(tmp_path, cfg=["train_cfg=3"]), capsys)
    assert_one_line_error(code, err, "train_cfg must be a dict")
    code, _, err = run_cli(tiny_run_args(tmp_path, cfg=["load_from.x=1"]), capsys)
    assert_one_line_error(code, err, "--cfg-options")


def test_subprocess_exit_status_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--models", "no_such_model_*",
                           "--suite", "mnist5k", "--results", str(tmp_path / "r.jsonl")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("harness: error: no model matches 'no_such_model_*'")
    assert not (tmp_path / "r.jsonl").exists()


def test_help_on_every_command(capsys):
    for argv in (["--help"], ["list", "--help"], ["run", "--help"], ["leaderboard", "--help"],
                 ["embedded", "--help"]):
        code, out, _ = run_cli(argv, capsys)
        assert code == 0 and "usage: python -m harness" in out


# ---------------------------------------------------------------- --flops-budget (old spelling --budget)


def _checkpoint(trained_checkpoint):
    work, _ = trained_checkpoint
    return str(sorted(work.glob("*.pth"))[-1])


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.2", "nan"])
def test_budget_outside_the_unit_interval(tmp_path, capsys, trained_checkpoint, bad):
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", _checkpoint(trained_checkpoint),
                                         "--flops-budget", "0.5", bad), capsys)
    assert_one_line_error(code, err, "--flops-budget", "(0, 1]")
    assert not (tmp_path / "results.jsonl").exists()


def test_budget_needs_eval_only(tmp_path, capsys):
    code, _, err = run_cli(tiny_run_args(tmp_path, "--flops-budget", "0.5"), capsys)
    assert_one_line_error(code, err, "--flops-budget", "--eval-only --checkpoint")


def test_the_old_spelling_budget_still_works_with_a_note(tmp_path, capsys):
    """--budget is the deprecated spelling of --flops-budget: the same flag, one note on stderr."""
    code, _, err = run_cli(tiny_run_args(tmp_path, "--budget", "0.5"), capsys)
    note, error = err.strip().splitlines()
    assert note == "harness: --budget is deprecated; use --flops-budget"
    assert_one_line_error(code, error, "--flops-budget", "--eval-only --checkpoint")


@pytest.mark.parametrize("model, what", [("dhvn_nano_static", "is static"),
                                         ("eshvision_xs_soft", "routes softly")])
def test_budget_on_a_model_without_decisions(tmp_path, capsys, model, what):
    ckpt = tmp_path / "fake.pth"
    torch.save({"state_dict": {}}, ckpt)
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", str(ckpt), "--flops-budget", "0.5",
                                         model=model), capsys)
    assert_one_line_error(code, err, "--flops-budget needs a routed model", model, what)
    assert not (tmp_path / "results.jsonl").exists()


def test_budget_out_of_reach_writes_nothing(tmp_path, capsys, trained_checkpoint):
    code, _, err = run_cli(tiny_run_args(tmp_path, "--eval-only", "--checkpoint", _checkpoint(trained_checkpoint),
                                         "--flops-budget", "0.6", "0.01"), capsys)
    assert_one_line_error(code, err, "--flops-budget", "out of reach", "of its full form's FLOPs")
    assert not (tmp_path / "results.jsonl").exists()  # 0.6 was fine, but nothing is half-written
