"""Run experiment command lines (one per line of a file) with N workers at 1 thread each.

    python -m experiments.run_queue cmds.txt out.jsonl [--workers 2]
Each command's stdout is appended to out.jsonl, its stderr to out.jsonl.err.
"""
import argparse
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

ap = argparse.ArgumentParser()
ap.add_argument("cmds")
ap.add_argument("out")
ap.add_argument("--workers", type=int, default=2)
a = ap.parse_args()
lines = [l.strip() for l in open(a.cmds) if l.strip() and not l.startswith("#")]
env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run(cmd):
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env)
    with open(a.out, "a") as f:
        f.write(p.stdout)
    with open(a.out + ".err", "a") as f:
        f.write(f"### {cmd}\n" + p.stderr[-3000:])


with ThreadPoolExecutor(a.workers) as ex:
    list(ex.map(run, lines))
