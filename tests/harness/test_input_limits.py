"""Issue 25, "Input that ends in a traceback or is accepted silently": each case ends as one line
on stderr, exit status 2, no traceback, and nothing written (no work dir, no record)."""
from __future__ import annotations

import json

import pytest

from harness_testutils import assert_one_line_error, run_cli

# ---------------------------------------------------------------- text suite: files that are not UTF-8 text


def _text_run(tmp_path, root) -> list:
    return ["run", "--models", "exp11_baseline_tiny", "--suite", "text", "--data-root", str(root),
            "--max-iters", "2", "--work-dir", str(tmp_path / "work"), "--results", str(tmp_path / "r.jsonl")]


@pytest.mark.parametrize("train, fragments", [
    (b"", ["the train split of", "is empty", "train.txt: 0 bytes"]),
    ("caf\u00e9 na\u00efve\n".encode("latin-1") * 50, ["train.txt is not UTF-8 text", "byte 0xe9 at offset 3",
                                                        "iconv"]),
    (b"PK\x03\x04" + bytes(range(256)) * 8, ["train.txt is not a text file", "a NUL byte at offset 4"]),
], ids=["empty", "latin-1", "binary"])
def test_text_files_that_are_not_utf8_text(tmp_path, capsys, train, fragments):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "train.txt").write_bytes(train)
    (root / "val.txt").write_text("plain text " * 100)
    code, _, err = run_cli(_text_run(tmp_path, root), capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "work").exists() and not (tmp_path / "r.jsonl").exists()
    assert (root / "train.txt").read_bytes() == train  # the corpus is only read


def test_a_folder_named_like_a_text_file(tmp_path, capsys):
    root = tmp_path / "corpus"
    (root / "train.txt").mkdir(parents=True)
    (root / "val.txt").write_text("plain text " * 100)
    code, _, err = run_cli(_text_run(tmp_path, root), capsys)
    assert_one_line_error(code, err, "cannot read", "train.txt", "Is a directory")


def test_the_bad_byte_offset_across_chunks(tmp_path):
    """The check reads in chunks; a character cut by a chunk's end is no error, and the offset
    named is the bad byte's in the file, whatever the chunk size."""
    from harness.errors import HarnessError
    from harness.suites.text import _check_text_file
    good = tmp_path / "good.txt"
    good.write_text("\u00e9\u2603" * 50 + "\n")  # 2- and 3-byte characters cut at every chunk size
    bad = tmp_path / "bad.txt"
    bad.write_bytes("\u2603\u2603ab".encode() + b"\xff" + b"tail")
    for chunk in (1, 2, 3, 5, 7, 1 << 20):
        _check_text_file(str(good), chunk=chunk)
        with pytest.raises(HarnessError, match="byte 0xff at offset 8"):
            _check_text_file(str(bad), chunk=chunk)
    cut = tmp_path / "cut.txt"
    cut.write_bytes("ok \u2603".encode()[:-1])  # a file ending inside a character
    with pytest.raises(HarnessError, match="not UTF-8 text"):
        _check_text_file(str(cut), chunk=2)


# ---------------------------------------------------------------- sequence length past the model's or the data's


def _lm_run(tmp_path, *extra) -> list:
    return ["run", "--models", "exp11_baseline_tiny", "--suite", "pydocs", "--max-iters", "1",
            "--work-dir", str(tmp_path / "work"), "--results", str(tmp_path / "r.jsonl"), *extra]


@pytest.mark.parametrize("loader", ["test_dataloader", "train_dataloader"])
def test_data_longer_than_the_model_is_refused_before_training(tmp_path, capsys, loader):
    """Before: the test set's longer windows failed in the final evaluation, after all of training
    (ValueError: sequence length 512 exceeds max_seq_len=256, a traceback, exit 1)."""
    code, _, err = run_cli(_lm_run(tmp_path, "--cfg-options", f"{loader}.dataset.max_seq_len=512"), capsys)
    assert_one_line_error(code, err, f"{loader}.dataset.max_seq_len=512 is longer than the model's max_seq_len=256",
                          "--model-kwargs max_seq_len=512")
    assert not (tmp_path / "work").exists() and not (tmp_path / "r.jsonl").exists()


def test_a_window_longer_than_the_corpus(tmp_path, capsys):
    code, _, err = run_cli(_lm_run(tmp_path, "--model-kwargs", "max_seq_len=100000"), capsys)
    assert_one_line_error(code, err, "suite pydocs", "too few for one window of max_seq_len=100000", "at most")
    assert not (tmp_path / "work").exists() and not (tmp_path / "r.jsonl").exists()
    code, out, err = run_cli(["bench", "--models", "exp11_baseline_tiny", "--seq-len", "100000"], capsys)
    assert_one_line_error(code, err, "suite pydocs", "max_seq_len=100000")
    assert out == ""


# ---------------------------------------------------------------- embedded: what every step would trip on


@pytest.mark.parametrize("extra, fragments", [
    (["--seeds", "-1"], ["--seeds must lie in [0, 2**32), got -1", "nothing was run"]),
    (["--seeds", "0", "0"], ["--seeds names seed 0 more than once"]),
    (["--jobs", "0"], ["--jobs must be >= 1, got 0"]),
    (["--out", "PAGE.jsonl"], ["would be read back as results"]),
    (["--out", "README.md"], ["leaderboard page", "is not a leaderboard page", "left as it was", "nothing was run"]),
    (["--results-dir", "README.md"], ["results dir", "is a regular file, not a folder"]),
])
def test_embedded_refuses_before_its_first_step(tmp_path, capsys, monkeypatch, extra, fragments):
    """Before: `--seeds -1` ran the job and failed each of its steps in turn; `--out README.md`
    trained for an hour and then replaced the README with the leaderboard page."""
    monkeypatch.chdir(tmp_path)  # the job's work_dirs/ would land here
    (tmp_path / "README.md").write_text("precious\n")
    code, out, err = run_cli(["embedded", *extra], capsys)
    assert_one_line_error(code, err, *fragments)
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    assert (tmp_path / "README.md").read_text() == "precious\n"


# ---------------------------------------------------------------- bench: load thresholds that judge nothing


@pytest.mark.parametrize("flag, value", [("--max-load", "nan"), ("--max-load", "inf"), ("--max-load", "-1"),
                                         ("--max-wait", "nan"), ("--max-wait", "inf")])
def test_bench_load_thresholds_must_be_finite(tmp_path, capsys, flag, value):
    """Before: --max-load nan marked every figure reliable and wrote NaN into the JSON (exit 0);
    --max-wait nan would wait for ever on a loaded machine."""
    out = tmp_path / "bench.json"
    code, stdout, err = run_cli(["bench", "--models", "dhvn_nano", "--iters", "1", "--warmup", "0", flag, value,
                                 "--json-out", str(out)], capsys)
    assert_one_line_error(code, err, f"{flag} must be >= 0 and finite")
    assert stdout == "" and not out.exists()


# ---------------------------------------------------------------- compare: training logs it cannot read


def _log(tmp_path, content) -> str:
    d = tmp_path / "work" / "dhvn_nano" / "seed0" / "20260101_000000" / "vis_data"
    d.mkdir(parents=True)
    if content is None:
        (d / "scalars.json").mkdir()  # a folder named like the log
    else:
        (d / "scalars.json").write_bytes(content)
    return str(d / "scalars.json")


_GOOD = b'{"iter": 1, "loss": 2.0}\n{"iter": 2, "loss": 1.5}\n'


@pytest.mark.parametrize("content, fragments", [
    (_GOOD + b'{"iter": 3, "loss": 1.\xff}\n', ["line 3: not UTF-8 text"]),
    (_GOOD + b'{"iter": "3", "loss": 1.0}\n', ["line 3: iter is '3', not a whole number"]),
    (_GOOD + b'{"iter": 3, "loss": [1]}\n', ["line 3: loss is [1], not a number"]),
    (_GOOD + b'{"iter": 3, "loss": ' + b"[" * 100000 + b"]" * 100000 + b"}\n", ["line 3: nested too deeply"]),
    (None, ["is a folder, not mmengine's scalars.json"]),
], ids=["latin-1", "str-iter", "list-loss", "deep", "folder"])
def test_compare_refuses_a_training_log_it_cannot_read(tmp_path, capsys, content, fragments):
    """Before (719c74b): a traceback and exit 1 for the bytes, the nesting and the folder
    (UnicodeDecodeError, RecursionError, IsADirectoryError); a str iter or a list loss was drawn
    into the curves without a word, exit 0."""
    log = _log(tmp_path, content)
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", "--models", "dhvn_nano", "--suite", "mnist5k", "--work-dirs",
                                 str(tmp_path / "work"), "--results-dir", str(tmp_path / "none"), "--out", str(out)],
                                capsys)
    assert_one_line_error(code, err, f"training log {log}", *fragments)
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"\n\n", _GOOD + b'{"iter": 3, "lo'], ids=["empty", "blank", "cut"])
def test_compare_reads_an_empty_or_cut_log_as_what_it_holds(tmp_path, capsys, content):
    """A log killed mid-write keeps its whole lines; an empty one is a run with no log."""
    _log(tmp_path, content)
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(["compare", "--models", "dhvn_nano", "--suite", "mnist5k", "--work-dirs",
                                 str(tmp_path / "work"), "--results-dir", str(tmp_path / "none"), "--out", str(out)],
                                capsys)
    if content.strip():
        assert code == 0, err
        curves = json.loads((out / "loss_curves.json").read_text())
        assert "Traceback" not in err and curves
    else:
        assert_one_line_error(code, err, "nothing to compare for dhvn_nano")


# ---------------------------------------------------------------- FLOPs budgets: a NaN fit, no calibration items


def test_a_budget_fit_with_a_nan_shift_is_refused_where_it_is_made():
    """Before: flops_budget applied it, every logit became NaN and argmax sent every item to
    choice 0, without a word."""
    from zoo.budget import BudgetFit
    with pytest.raises(ValueError, match="BudgetFit.shift must be a finite number, got nan"):
        BudgetFit(target=0.5, shift=float("nan"), fraction=0.5, reachable=(0.1, 1.0), full_flops=100)
    with pytest.raises(ValueError, match="BudgetFit.target is a fraction"):
        BudgetFit(target=float("nan"), shift=0.0, fraction=0.5, reachable=(0.1, 1.0), full_flops=100)
    BudgetFit(target=1.0, shift=-3.0, fraction=0.9, reachable=(0.1, 1.0), full_flops=100)  # a real fit


def test_an_empty_calibration_batch_is_a_value_error():
    """Before: a RuntimeError from a block's reshape ("cannot reshape tensor of 0 elements")."""
    import torch

    import zoo
    model = zoo.create_model("dhvn_nano", img_size=28, in_chans=1, num_classes=10).eval()
    empty = torch.zeros(0, 1, 28, 28)
    for fit in (lambda: zoo.budget.fit_budgets(model, [0.5], empty), lambda: zoo.budget.budget_range(model, empty)):
        with pytest.raises(ValueError, match=r"at least one item, got \(0, 1, 28, 28\)"):
            fit()


def test_a_budget_on_an_empty_training_split_is_one_line(tmp_path, capsys, trained_checkpoint):
    """Before: IndexError from collating no items, a traceback."""
    work, _ = trained_checkpoint
    ckpt = str(sorted(work.glob("*.pth"))[-1])
    code, _, err = run_cli(["run", "--models", "dhvn_nano", "--suite", "mnist5k", "--eval-only", "--checkpoint", ckpt,
                            "--flops-budget", "0.6", "--work-dir", str(tmp_path / "w"),
                            "--results", str(tmp_path / "r.jsonl"), "--cfg-options",
                            "train_dataloader.dataset.limit=0", "test_dataloader.dataset.limit=30"], capsys)
    assert_one_line_error(code, err, "--flops-budget fits each budget on items of the training split", "empty")
    assert not (tmp_path / "r.jsonl").exists()
