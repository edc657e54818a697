"""The Performance section's efficiency and router-overhead rows at an earlier commit and now
(leaderboard/perf/), as markdown.

    python experiments/archive/issue12_before_after.py                 # since issue 12 began: fb3d438, 2 threads vs dense
    python experiments/archive/issue12_before_after.py --before 3d11708 --every-reading
                                                               # every reading (1 and 2 threads, both references)

fb3d438's files hold one reading per row (2 threads, against dense mode); later files hold the
1-thread reading first, and the summary's "before" column is a file's first reading. With
--every-reading each cell is "before -> now" for the same thread count and reference.
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
    return int(r.get("threads") or r.get("conditions", {}).get("threads") or 0)


def _at(rows, t):
    return next((r for r in rows if _threads(r) == t), None)


def _eff(r, reference: bool):
    if not r:
        return None
    return (r.get("reference") or {}).get("efficiency") if reference else r.get("efficiency")


def _fmt(v, spec=".2f"):
    return format(v, spec) if v is not None else "n/a"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--before", default="fb3d438")
    p.add_argument("--every-reading", action="store_true",
                   help="before -> now at 1 and 2 threads against both references (the before commit must "
                        "hold those readings)")
    a = p.parse_args()
    readings = [(1, False), (1, True), (2, False), (2, True)]
    if a.every_reading:
        print("| row | " + " | ".join(f"{t} thread{'s' if t > 1 else ''} vs {'static' if ref else 'dense'}"
                                      for t, ref in readings) + " |")
    else:
        # a file's first result: fb3d438's only one (2 threads), the 1-thread one in later files
        print("| row | before: first reading, vs dense | 1 thread vs dense | 1 thread vs static | "
              "2 threads vs dense | 2 threads vs static |")
    print("|---|---|---|---|---|" + ("" if a.every_reading else "---|"))
    for path in sorted(glob.glob(os.path.join(PERF, "bench_*.json"))):
        name = os.path.basename(path)
        now = json.load(open(path)).get("results") or []
        old = (_before(a.before, name) or {}).get("results") or []
        if a.every_reading:
            cells = [f"{_fmt(_eff(_at(old, t), ref))} → {_fmt(_eff(_at(now, t), ref))}" for t, ref in readings]
        else:
            cells = [_fmt(old[0].get("efficiency")) if old else "n/a"]
            cells += [_fmt(_eff(_at(now, t), ref)) for t, ref in readings]
        print(f"| {name[6:-5]} | " + " | ".join(cells) + " |")
    now = json.load(open(os.path.join(PERF, "router_overhead.json")))["results"]
    old = (_before(a.before, "router_overhead.json") or {}).get("results") or []
    print()
    key = lambda r: (r["model"], r["branch"])  # noqa: E731
    if a.every_reading:
        print("| router overhead | 1 thread | 2 threads | router FLOPs |")
        print("|---|---|---|---|")
    else:
        print("| router overhead | before: first reading | 1 thread | 2 threads |")
        print("|---|---|---|---|")
    for k in dict.fromkeys(key(r) for r in now):
        mine = [r for r in now if key(r) == k]
        was = [r for r in old if key(r) == k]
        if a.every_reading:
            cells = []
            for t in (1, 2):
                b, r = _at(was, t), _at(mine, t)
                cells.append(f"{_fmt(b and b['overhead'], '.1%')} → {_fmt(r and r['overhead'], '.1%')}"
                             f" ({'met' if r and r['met'] else 'missed'})")
            fl = mine[0].get("flops_overhead")
            cells.append(_fmt(fl, ".1%"))
        else:
            cells = [_fmt(was[0]["overhead"], ".1%") if was else "n/a"]
            for t in (1, 2):
                r = _at(mine, t)
                cells.append(f"{r['overhead']:.1%} ({'met' if r['met'] else 'missed'})" if r else "n/a")
        print(f"| {k[0]} {k[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
