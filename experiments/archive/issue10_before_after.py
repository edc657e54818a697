"""Issue 10's faults, run against the code before the work (a clone at BEFORE) and the code here.

    python experiments/archive/issue10_before_after.py [--before d925ee7] [--out experiments/results/issue10.md]

Each case is one shell-level command, as a user would type it, run from each tree's root with a
scratch folder of its own; the table gives the exit status and the last line of stderr (or the
fact the case checks). Cases that need a kill at an exact instant, two processes at once or a
full disk live in the tests (tests/harness/test_faults.py, test_readme_job.py) and are named, not
run, here. About 4 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--cfg-options", "train_dataloader.dataset.limit=64", "test_dataloader.dataset.limit=60",
        "test_dataloader.batch_size=30"]


def harness(tree: str, scratch: str, *argv: str, env=None):
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=tree, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=tree, **(env or {})))
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return proc.returncode, (err[-1] if err else ""), proc


def run_args(scratch: str, *extra: str, model="dhvn_nano", name="r"):
    return ["run", "--models", model, "--suite", "mnist5k", "--batch-size", "16",
            "--work-dir", os.path.join(scratch, name), "--results", os.path.join(scratch, f"{name}.jsonl"), *extra]


def records(scratch: str, name="r"):
    path = os.path.join(scratch, f"{name}.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def case_foreign_resume(tree, s):
    harness(tree, s, *run_args(s, "--max-iters", "2", *TINY, model="eshvision_xs", name="esh"))
    ckpt = os.path.join(s, "esh", "iter_2.pth")
    code, line, _ = harness(tree, s, *run_args(s, "--max-iters", "2", "--resume", ckpt, *TINY))
    return code, line, f"records: {len(records(s))}"


def case_missing_last_checkpoint(tree, s):
    work = os.path.join(s, "r")
    os.makedirs(work)
    with open(os.path.join(work, "last_checkpoint"), "w") as f:
        f.write(os.path.join(work, "iter_4.pth"))
    return harness(tree, s, *run_args(s, "--max-iters", "8", "--resume", *TINY))[:2] + ("",)


def case_unsafe_checkpoint(tree, s):
    evil = os.path.join(s, "evil.pth")
    subprocess.run([sys.executable, "-c", f"""
import os, torch
class Shell:
    def __reduce__(self):
        return (os.system, ("touch {s}/pwned",))
torch.save({{"state_dict": {{}}, "x": Shell()}}, {evil!r})"""], check=True)
    code, line, _ = harness(tree, s, *run_args(s, "--eval-only", "--checkpoint", evil, *TINY))
    return code, line, "pwned" if os.path.exists(os.path.join(s, "pwned")) else "not run"


def case_unwritable_store(tree, s):
    blocker = os.path.join(s, "file")
    open(blocker, "w").close()
    code, line, _ = harness(tree, s, "run", "--models", "dhvn_nano", "--suite", "mnist5k", "--batch-size", "16",
                            "--max-iters", "2", "--work-dir", os.path.join(s, "w"),
                            "--results", os.path.join(blocker, "r.jsonl"), *TINY)
    trained = os.path.exists(os.path.join(s, "w", "iter_2.pth"))
    return code, line, "trained first" if trained else "nothing trained"


def _kwargs_case(kv):
    def case(tree, s):
        code, line, _ = harness(tree, s, *run_args(s, "--max-iters", "2", "--model-kwargs", kv, *TINY))
        return code, line, f"records: {len(records(s))}"
    return case


def _cfg_case(kv):
    def case(tree, s):
        argv = run_args(s, "--max-iters", "2", *TINY, kv)
        i = argv.index("--batch-size")
        del argv[i:i + 2]  # the flag would override the option
        code, line, _ = harness(tree, s, *argv)
        recs = records(s)
        return code, line, f"records: {len(recs)}"
    return case


def _write_folder(root, classes, corrupt=False):
    subprocess.run([sys.executable, "-c", f"""
import os
from PIL import Image
from harness.suites.mnist5k import Mnist5k
for split, src in (("train", Mnist5k("train")), ("val", Mnist5k("test"))):
    seen = {{}}
    for img, label in zip(src.images, src.labels.tolist()):
        if label not in {classes!r} or seen.get(label, 0) >= 2:
            continue
        seen[label] = seen.get(label, 0) + 1
        d = os.path.join({root!r}, split, f"digit{{label}}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(((img[0] * 0.3081 + 0.1307).clamp(0, 1) * 255).byte().numpy(), mode="L").save(
            os.path.join(d, f"{{seen[label]}}.png"))
if {corrupt!r}:
    open(os.path.join({root!r}, "train", "digit1", "broken.png"), "wb").write(b"not a png" * 8)
"""], check=True, env=dict(os.environ, PYTHONPATH=HERE))


def _folder_case(classes, corrupt):
    def case(tree, s):
        _write_folder(os.path.join(s, "data"), classes, corrupt)
        code, line, _ = harness(tree, s, "run", "--models", "dhvn_nano", "--suite", "imagefolder", "--data-root",
                                os.path.join(s, "data"), "--max-iters", "2", "--batch-size", "4",
                                "--model-kwargs", "img_size=32", "--work-dir", os.path.join(s, "r"),
                                "--results", os.path.join(s, "r.jsonl"))
        recs = records(s)
        return code, line, (f"recorded top-1 {recs[0]['metrics']['top1']:.0f} %" if recs else "records: 0")
    return case


def _blocked_out(command):
    def case(tree, s):
        blocker = os.path.join(s, "file")
        open(blocker, "w").close()
        if command == "leaderboard":
            argv = ["leaderboard", "--results-dir", os.path.join(tree, "leaderboard", "results"),
                    "--out", os.path.join(blocker, "PAGE.md")]
        else:
            harness(tree, s, *run_args(s, "--max-iters", "2", *TINY))
            argv = ["visualize", "--model", "dhvn_nano", "--checkpoint", os.path.join(s, "r", "iter_2.pth"),
                    "--suite", "mnist5k", "--out", os.path.join(blocker, "pics")]
        return harness(tree, s, *argv)[:2] + ("",)
    return case


def case_nan_tau(tree, s):
    harness(tree, s, *run_args(s, "--max-iters", "2", *TINY))
    bad = os.path.join(s, "bad.pth")
    subprocess.run([sys.executable, "-c", f"""
import torch, harness
from harness.engine.checkpoint import load_checkpoint_file
c = load_checkpoint_file({os.path.join(s, 'r', 'iter_2.pth')!r})
for k in c["state_dict"]:
    if k.endswith(".tau"):
        c["state_dict"][k] = torch.tensor(float("nan"))
torch.save(c, {bad!r})"""], check=True, env=dict(os.environ, PYTHONPATH=tree), cwd=tree)
    code, line, _ = harness(tree, s, *run_args(s, "--eval-only", "--checkpoint", bad, *TINY, name="e"))
    recs = records(s, "e")
    return code, line, (f"recorded top-1 {recs[0]['metrics']['top1']}" if recs else "records: 0")


def case_non_numeric_metric(tree, s):
    res = os.path.join(s, "results")
    os.makedirs(res)
    with open(os.path.join(res, "mnist5k.jsonl"), "w") as f:
        f.write(json.dumps({"model": "m", "suite": "mnist5k", "seed": 0, "task": "image-classification",
                            "metrics": {"top1": "abc", "top5": 1.0, "loss": 1.0}}) + "\n")
    code, line, _ = harness(tree, s, "leaderboard", "--results-dir", res, "--out", os.path.join(s, "PAGE.md"))
    page = open(os.path.join(s, "PAGE.md")).read() if os.path.exists(os.path.join(s, "PAGE.md")) else ""
    listed = "## Problems" in page and "abc" in page.split("## Problems", 1)[1]
    row = next((ln for ln in page.splitlines() if ln.startswith("| m ")), "")
    return code, line, "listed under Problems" if listed else f"table row: {' '.join(row.split())[:60]}"


def case_console_and_hash(tree, s):
    code, _, p = harness(tree, s, *run_args(s, "--max-iters", "2", *TINY))
    harness(tree, s, *run_args(s, "--max-iters", "2", *TINY, name="r2"))
    a, b = records(s)[0], records(s, "r2")[0]
    lines = len([ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()])
    same = a["config"]["sha256"] == b["config"]["sha256"]
    return code, f"{lines} console lines", f"two work dirs: {'same' if same else 'different'} config hash"


def case_torchrun_record(tree, s):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29561",
                           "-m", "harness", *run_args(s, "--max-iters", "2", "--launcher", "pytorch", *TINY)],
                          cwd=tree, capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=tree))
    recs = records(s)
    t = recs[0]["train"] if recs else {}
    return proc.returncode, f"{len(recs)} record(s)", (f"world_size {t.get('world_size')}, global batch "
                                                        f"{t.get('global_batch_size')}, command {recs[0]['command'][0]}"
                                                        if recs else "")


CASES = [
    ("--resume with another model's checkpoint", case_foreign_resume),
    ("--resume, last_checkpoint names a missing file", case_missing_last_checkpoint),
    ("--eval-only on a checkpoint that runs os.system", case_unsafe_checkpoint),
    ("results store that cannot be written", case_unwritable_store),
    ("--model-kwargs in_chans=3 (1-channel suite)", _kwargs_case("in_chans=3")),
    ("--model-kwargs img_size=64 (28x28 suite)", _kwargs_case("img_size=64")),
    ("--model-kwargs num_classes=0", _kwargs_case("num_classes=0")),
    ("ImageFolder with one class", _folder_case([3], False)),
    ("ImageFolder with a corrupt image", _folder_case([0, 1], True)),
    ("--cfg-options train_dataloader.batch_size=0", _cfg_case("train_dataloader.batch_size=0")),
    ("--cfg-options optim_wrapper.optimizer.lr=-1", _cfg_case("optim_wrapper.optimizer.lr=-1")),
    ("--cfg-options train_dataloder.batch_size=8 (typo)", _cfg_case("train_dataloder.batch_size=8")),
    ("visualize --out under a file", _blocked_out("visualize")),
    ("leaderboard --out under a file", _blocked_out("leaderboard")),
    ("--eval-only, checkpoint with tau = NaN", case_nan_tau),
    ("leaderboard, a record with top1 \"abc\"", case_non_numeric_metric),
    ("a tiny run: console lines; config hash", case_console_and_hash),
    ("torchrun --nproc_per_node=2 ... --launcher pytorch", case_torchrun_record),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", default="d925ee7")
    p.add_argument("--out", default=os.path.join(HERE, "experiments", "results", "issue10.md"))
    p.add_argument("--only", type=int, nargs="+", help="case numbers (1-based)")
    a = p.parse_args()
    before = os.path.join(tempfile.gettempdir(), f"issue10-before-{a.before}")
    if not os.path.isdir(before):
        subprocess.run(["git", "clone", "-q", HERE, before], check=True)
        subprocess.run(["git", "-C", before, "checkout", "-q", a.before], check=True)
    load = os.getloadavg()
    rows = []
    for i, (name, case) in enumerate(CASES, 1):
        if a.only and i not in a.only:
            continue
        cells = []
        for tree in (before, HERE):
            scratch = tempfile.mkdtemp(prefix="issue10-")
            try:
                code, line, fact = case(tree, scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            cells.append(f"exit {code}: {line[:150]}" + (f" ({fact})" if fact else ""))
        rows.append((i, name, *cells))
        print(f"{i}. {name}\n   before: {cells[0]}\n   after:  {cells[1]}", flush=True)
    with open(a.out, "w") as f:
        f.write(f"# Issue 10: before ({a.before}) and after\n\n`python experiments/archive/issue10_before_after.py`, "
                f"load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.\n\n")
        f.write("| # | case | before | after |\n|---|---|---|---|\n")
        for i, name, b, c in rows:
            f.write(f"| {i} | {name} | {b.replace('|', '/')} | {c.replace('|', '/')} |\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
