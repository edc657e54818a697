"""`run --config my_cfg.py`: an mmengine config of one's own, on top of a suite config through
_base_; --models, --seeds, --cfg-options and the flags still apply, and mistakes are one line."""
from __future__ import annotations

import os

from harness_testutils import assert_one_line_error, read_jsonl, run_cli

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "harness", "configs")


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_own_config_on_a_suite_base(tmp_path, capsys):
    cfg = _write(tmp_path / "my_cfg.py", f"""
_base_ = [{os.path.join(CONFIGS, 'mnist5k.py')!r}]
train_cfg = dict(max_iters=3)
optim_wrapper = dict(optimizer=dict(lr=5e-3))
train_dataloader = dict(batch_size=8, dataset=dict(limit=32))
test_dataloader = dict(dataset=dict(limit=20))
""")
    results = tmp_path / "r.jsonl"
    code, _, err = run_cli(["run", "--config", cfg, "--models", "dhvn_nano", "dhvn_nano_static", "--seeds", "0", "1",
                            "--work-dir", str(tmp_path / "w"), "--results", str(results),
                            "--cfg-options", "test_dataloader.batch_size=10"], capsys)
    assert code == 0, err
    recs = read_jsonl(results)
    assert sorted((r["model"], r["seed"]) for r in recs) == [("dhvn_nano", 0), ("dhvn_nano", 1),
                                                              ("dhvn_nano_static", 0), ("dhvn_nano_static", 1)]
    for r in recs:
        assert r["suite"] == "mnist5k" and r["train"]["iters"] == 3 and r["train"]["lr"] == 5e-3
        assert r["train"]["batch_size"] == 8 and r["data"]["test_items"] == 20
        assert r["config"]["resolved"]["test_dataloader"]["batch_size"] == 10   # --cfg-options on top
        assert r["command"][r["command"].index("--config") + 1] == os.path.abspath(cfg)
    # a flag still wins over the file, as over a suite config
    code, _, err = run_cli(["run", "--config", cfg, "--models", "dhvn_nano", "--lr", "2e-3", "--work-dir",
                            str(tmp_path / "w2"), "--results", str(tmp_path / "r2.jsonl")], capsys)
    assert code == 0, err
    assert read_jsonl(tmp_path / "r2.jsonl")[0]["train"]["lr"] == 2e-3


def test_config_mistakes_are_one_line(tmp_path, capsys):
    def run(*argv):
        return run_cli(["run", "--models", "dhvn_nano", "--results", str(tmp_path / "r.jsonl"), *argv], capsys)
    code, _, err = run("--config", str(tmp_path / "nope.py"))
    assert_one_line_error(code, err, "config", "nope.py does not exist")
    code, _, err = run("--config", _write(tmp_path / "plain.py", "model = dict(type='ZooClassifier')\n"))
    assert_one_line_error(code, err, "names no suite", "_base_")
    code, _, err = run("--config", _write(tmp_path / "bare.py", "suite = 'mnist5k'\n"))
    assert_one_line_error(code, err, "has no model dict")
    code, _, err = run("--config", _write(tmp_path / "net.py", "suite = 'mnist5k'\n"
                                          "model = dict(type='dhvn_nano', num_classes=10)\n"))
    assert_one_line_error(code, err, "model type 'dhvn_nano' is a bare zoo network",
                          "type='ZooClassifier', arch='dhvn_nano'")
    code, _, err = run("--config", _write(tmp_path / "broken.py", "model = dict(\n"))
    assert_one_line_error(code, err, "cannot read config", "broken.py")
    code, _, err = run()
    assert_one_line_error(code, err, "run needs --suite (or --config)")
    assert not (tmp_path / "r.jsonl").exists()
