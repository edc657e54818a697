"""The resolved config is checked, not only the flags: --cfg-options keys and values, and data
that does not fit the model. Each case is one line, exit status 2, no record, nothing trained."""
from __future__ import annotations

import pytest

from harness_testutils import assert_one_line_error, read_jsonl, run_cli, tiny_run_args, write_imagefolder

FOLDER_ARGS = ["--max-iters", "2", "--batch-size", "4", "--model-kwargs", "img_size=32",
               "--cfg-options", "train_dataloader.num_workers=0", "test_dataloader.num_workers=0",
               "train_dataloader.persistent_workers=False", "test_dataloader.persistent_workers=False"]


def _refused(tmp_path, capsys, argv, *fragments):
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, *fragments)
    assert read_jsonl(tmp_path / "results.jsonl") == []
    assert not (tmp_path / "work").exists()  # refused before a runner was built


@pytest.mark.parametrize("option, fragments", [
    ("train_dataloader.batch_size=0", ["train_dataloader.batch_size must be an integer >= 1", "0"]),
    ("test_dataloader.batch_size=-3", ["test_dataloader.batch_size must be an integer >= 1", "-3"]),
    ("optim_wrapper.optimizer.lr=-1", ["optim_wrapper.optimizer.lr must be a finite number > 0", "-1"]),
    ("optim_wrapper.optimizer.lr='fast'", ["optim_wrapper.optimizer.lr must be a finite number > 0", "fast"]),
    ("train_cfg.max_iters=0", ["train_cfg.max_iters must be an integer >= 1"]),
])
def test_cfg_option_values_get_the_flags_checks(option, fragments, tmp_path, capsys):
    argv = tiny_run_args(tmp_path, cfg=[option])
    i = argv.index("--batch-size")
    del argv[i:i + 2]  # the flag would override the option under test
    if "max_iters" not in option:
        argv[1:1] = ["--max-iters", "1"]  # should the check fail, the run stays short
    _refused(tmp_path, capsys, argv, *fragments)


@pytest.mark.parametrize("option, fragments", [
    # a typo'd parent: named, with the key it was probably meant to be
    ("train_dataloder.batch_size=8", ["train_dataloder does not exist", "closest: train_dataloader"]),
    # a typo'd leaf of an existing dict
    ("train_dataloader.batch_szie=8", ["train_dataloader.batch_szie does not exist",
                                       "closest: train_dataloader.batch_size"]),
    # nothing close: what the dict does have
    ("optim_wrapper.zzz.lr=1", ["optim_wrapper.zzz does not exist", "optim_wrapper has", "optimizer"]),
])
def test_cfg_option_keys_that_do_not_exist(option, fragments, tmp_path, capsys):
    _refused(tmp_path, capsys, tiny_run_args(tmp_path, cfg=[option]), *fragments)


def test_cfg_option_new_argument_of_an_existing_dict_is_allowed(tmp_path, capsys):
    # `limit` is a constructor argument the suite config leaves at its default: a new leaf, not a typo
    code, _, err = run_cli(tiny_run_args(tmp_path, "--max-iters", "1", cfg=["train_dataloader.dataset.limit=32"]),
                           capsys)
    assert code == 0, err
    (rec,) = read_jsonl(tmp_path / "results.jsonl")
    assert rec["config"]["resolved"]["train_dataloader"]["dataset"]["limit"] == 32


@pytest.mark.parametrize("kwargs, fragments", [
    ("in_chans=3", ["serves images of 1 channels", "in_chans=3"]),
    ("img_size=64", ["serves images of 28 pixels a side", "img_size=64"]),
    ("num_classes=0", ["has 10 classes", "num_classes=0"]),
    ("num_classes=7", ["has 10 classes", "num_classes=7"]),
])
def test_model_kwargs_that_do_not_fit_the_data(kwargs, fragments, tmp_path, capsys):
    _refused(tmp_path, capsys, tiny_run_args(tmp_path, "--model-kwargs", kwargs), *fragments)


def test_image_size_reaches_an_imagefolder_suite(tmp_path, capsys):
    # ImageFolder data resize to the model, so img_size is not refused there (the record shows both)
    write_imagefolder(tmp_path / "data", per_class=1)
    code, _, err = run_cli(["run", "--models", "dhvn_nano", "--suite", "imagefolder", "--data-root",
                            str(tmp_path / "data"), "--results", str(tmp_path / "results.jsonl"),
                            "--work-dir", str(tmp_path / "w"), *FOLDER_ARGS], capsys)
    assert code == 0, err
    (rec,) = read_jsonl(tmp_path / "results.jsonl")
    resolved = rec["config"]["resolved"]
    assert resolved["model"]["arch_kwargs"]["img_size"] == resolved["test_dataloader"]["dataset"]["img_size"] == 32


def test_single_class_imagefolder_is_refused(tmp_path, capsys):
    write_imagefolder(tmp_path / "data", per_class=2, classes=[3])
    _refused(tmp_path, capsys, ["run", "--models", "dhvn_nano", "--suite", "imagefolder", "--data-root",
                                str(tmp_path / "data"), "--results", str(tmp_path / "results.jsonl"),
                                "--work-dir", str(tmp_path / "work"), *FOLDER_ARGS],
             "the data has 1 class(es)", "at least 2")


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_is_named(workers, tmp_path, capsys):
    write_imagefolder(tmp_path / "data", per_class=1, classes=[0, 1])
    bad = tmp_path / "data" / "train" / "digit1" / "broken.png"
    bad.write_bytes(b"not a png at all" * 4)
    args = [a.replace("num_workers=0", f"num_workers={workers}") for a in FOLDER_ARGS]
    if workers:
        args = [a for a in args if "persistent_workers" not in a]
    code, _, err = run_cli(["run", "--models", "dhvn_nano", "--suite", "imagefolder", "--data-root",
                            str(tmp_path / "data"), "--results", str(tmp_path / "results.jsonl"),
                            "--work-dir", str(tmp_path / "w"), *args], capsys)
    assert_one_line_error(code, err, "cannot read image", str(bad), "UnidentifiedImageError")
    assert read_jsonl(tmp_path / "results.jsonl") == []
