"""Does the code at HEAD train exactly as the commit the committed results came from?

    python experiments/archive/same_training.py [--at 88f8706]

Clones the repo at --at, trains dhvn_nano, eshvision_xs, eshvision_xs_soft and exp11_dynamic_tiny
for 12 iterations on small slices of the embedded suites in both trees (same seed, same
command), and compares every tensor of the final checkpoints and the evaluation metrics. About
90 s on 2 cores.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS = [("mnist5k", m, ["--batch-size", "16", "--cfg-options", "train_dataloader.dataset.limit=64",
                        "test_dataloader.dataset.limit=60"]) for m in ("dhvn_nano", "eshvision_xs", "eshvision_xs_soft")]
RUNS.append(("pydocs", "exp11_dynamic_tiny", ["--batch-size", "2", "--cfg-options", "train_dataloader.dataset.limit=8",
                                              "test_dataloader.dataset.limit=4"]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--at", default="88f8706")
    a = p.parse_args()
    scratch = tempfile.mkdtemp(prefix="same-training-")
    old = os.path.join(scratch, "old")
    subprocess.run(["git", "clone", "-q", HERE, old], check=True)
    subprocess.run(["git", "-C", old, "checkout", "-q", a.at], check=True)
    sys.path.insert(0, HERE)
    import torch
    from harness.engine.checkpoint import load_checkpoint_file
    same = True
    for suite, model, extra in RUNS:
        out = {}
        for label, tree in (("old", old), ("head", HERE)):
            wd = os.path.join(scratch, label, model)
            subprocess.run([sys.executable, "-m", "harness", "run", "--models", model, "--suite", suite,
                            "--max-iters", "12", "--work-dir", wd, "--results", wd + ".jsonl", *extra],
                           cwd=tree, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=tree))
            with open(wd + ".jsonl") as f:
                out[label] = (load_checkpoint_file(os.path.join(wd, "iter_12.pth"))["state_dict"],
                              json.loads(f.readline())["metrics"])
        (wa, ma), (wb, mb) = out["old"], out["head"]
        weights = wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        same &= weights and ma == mb
        print(f"{model}: weights {'identical' if weights else 'DIFFER'}, metrics {'equal' if ma == mb else 'DIFFER'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
