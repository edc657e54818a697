"""`python -m harness export`: a harness checkpoint becomes a weights file that
`pretrained_cfg_overlay=dict(file=...)` (or a shipped tag) loads; mistakes are one line."""
from __future__ import annotations

import torch

from harness_testutils import assert_one_line_error, run_cli


def test_export_then_load_gives_the_checkpoints_network(trained_checkpoint, tmp_path, capsys):
    import zoo
    from harness.engine.checkpoint import latest_checkpoint, load_checkpoint_file
    work, _ = trained_checkpoint
    ckpt = latest_checkpoint(str(work))
    out = tmp_path / "mine.safetensors"
    code, stdout, err = run_cli(["export", "--model", "dhvn_nano", "--tag", "mnist5k", "--checkpoint", ckpt,
                                 "--out", str(out)], capsys)
    assert code == 0, err
    assert "MiB" in stdout and out.is_file()
    net = zoo.create_model("dhvn_nano", pretrained=True, num_classes=10, in_chans=1, img_size=28,
                           pretrained_cfg_overlay=dict(file=str(out))).eval()
    state = load_checkpoint_file(ckpt)["state_dict"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, state["net." + k]), k
    from safetensors import safe_open
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["model"] == "dhvn_nano" and meta["tag"] == "mnist5k" and len(meta["source_sha256"]) == 64


def test_export_mistakes_are_one_line(trained_checkpoint, tmp_path, capsys):
    from harness.engine.checkpoint import latest_checkpoint
    work, _ = trained_checkpoint
    ckpt = latest_checkpoint(str(work))
    code, _, err = run_cli(["export", "--model", "dhvn_nano", "--tag", "in1k", "--checkpoint", ckpt,
                            "--out", str(tmp_path / "x.safetensors")], capsys)
    assert_one_line_error(code, err, "dhvn_nano.in1k is not a declared pretrained tag", "dhvn_nano.mnist5k")
    code, _, err = run_cli(["export", "--model", "eshvision_xs", "--tag", "mnist5k", "--checkpoint", ckpt,
                            "--out", str(tmp_path / "x.safetensors")], capsys)
    assert_one_line_error(code, err, "does not fit eshvision_xs.mnist5k")
    assert not (tmp_path / "x.safetensors").exists()
