"""The Performance section's efficiency and router-overhead rows before issue 12 (the committed
figures at fb3d438: 2 threads, against dense mode only) and now (leaderboard/perf/), as markdown.

    python experiments/issue12_before_after.py [--before fb3d438]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess

PERF = os.path.join("leaderboard", "perf")


def _before(rev: str, name: str):
    try:
        text = subprocess.run(["git", "show", f"{rev}:{PERF}/{name}"], capture_output=True, text=True,
                              check=True).stdout
    except subprocess.CalledProcessError:
        return None
    return json.loads(text)


def _threads(r) -> int:
    return int(r.get("conditions", {}).get("threads") or 0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--before", default="fb3d438")
    rev = p.parse_args().before
    print("| row | before: 2 threads, vs dense | 1 thread vs dense | 1 thread vs static | "
          "2 threads vs dense | 2 threads vs static |")
    print("|---|---|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(PERF, "bench_*.json"))):
        name = os.path.basename(path)
        now = json.load(open(path)).get("results") or []
        old = (_before(rev, name) or {}).get("results") or []
        cells = [f"{old[0]['efficiency']:.2f}" if old and old[0].get("efficiency") else "n/a"]
        for t in (1, 2):
            r = next((r for r in now if _threads(r) == t), None)
            eff = r.get("efficiency") if r else None
            ref = (r.get("reference") or {}).get("efficiency") if r else None
            cells += [f"{eff:.2f}" if eff else "n/a", f"{ref:.2f}" if ref else "n/a"]
        print(f"| {name[6:-5]} | " + " | ".join(cells) + " |")
    now = json.load(open(os.path.join(PERF, "router_overhead.json")))["results"]
    old = (_before(rev, "router_overhead.json") or {}).get("results") or []
    print()
    print("| router overhead | before (2 threads) | 1 thread | 2 threads |")
    print("|---|---|---|---|")
    key = lambda r: (r["model"], r["branch"])
    for k in dict.fromkeys(key(r) for r in now):
        was = next((r for r in old if key(r) == k), None)
        cells = [f"{was['overhead']:.1%}" if was else "n/a"]
        for t in (1, 2):
            r = next((r for r in now if key(r) == k and int(r.get("threads") or r.get("conditions", {}).get("threads") or 0) == t), None)
            cells.append(f"{r['overhead']:.1%} ({'met' if r['met'] else 'missed'})" if r else "n/a")
        print(f"| {k[0]} {k[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
