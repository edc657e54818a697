"""The allocator setting: it really stops the page-fault churn, it can be turned off, and a bad
value is one line. Each case runs in a fresh process, because mallopt is process-wide."""
import json
import os
import platform
import subprocess
import sys

import pytest

from harness_testutils import assert_one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# the pattern the setting is for: an eval forward's activations, freed and allocated again
CHURN = """
import json, resource, sys
sys.path.insert(0, {root!r})
from harness import runtime
settings = runtime.tune_allocator()
import torch, zoo
torch.set_num_threads(1)
model = zoo.create_model("eshvision_xs_soft", num_classes=10, in_chans=1, img_size=28).eval()
x = torch.randn(64, 1, 28, 28)
with torch.no_grad():
    for _ in range(2):
        model(x)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        model(x)
print(json.dumps(dict(faults=(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 4, **settings)))
"""


def churn(allocator: str) -> dict:
    env = dict(os.environ, ROUTING_ZOO_ALLOCATOR=allocator)
    out = subprocess.run([sys.executable, "-c", CHURN.format(root=ROOT)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the setting is glibc's mallopt")


@glibc
def test_tuned_allocator_reuses_freed_memory_instead_of_faulting_it_in_again():
    system, tuned = churn("system"), churn("tuned")
    assert system["allocator"] == "system" and tuned["allocator"] == "glibc mallopt"
    # per forward: thousands of pages faulted in again under glibc's defaults, next to none tuned
    assert system["faults"] > 1000
    assert tuned["faults"] < system["faults"] / 20


def test_bad_allocator_value_is_a_one_line_error():
    env = dict(os.environ, ROUTING_ZOO_ALLOCATOR="jemalloc")
    proc = subprocess.run([sys.executable, "-m", "harness", "list", "dhvn_nano"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert_one_line_error(proc.returncode, proc.stderr, "ROUTING_ZOO_ALLOCATOR", "'tuned' or 'system'")
    assert proc.stdout == ""


def _perf_files(perf: str) -> dict:
    """Every file under leaderboard/perf (the crossover rows in their folder too) -> its bytes."""
    out = {}
    for folder, _, names in os.walk(perf):
        for n in sorted(names):
            path = os.path.join(folder, n)
            with open(path, "rb") as f:
                out[os.path.relpath(path, perf)] = f.read()
    return out


@pytest.mark.parametrize("script", ["bench_router_overhead.py", "bench_ops.py", "bench_peers.py", "perf_report.py",
                                    "crossover.py"])
def test_benchmark_scripts_refuse_a_bad_allocator_value_in_one_line(script, tmp_path):
    env = dict(os.environ, ROUTING_ZOO_ALLOCATOR="jemalloc", PYTHONPATH=ROOT)
    args = {"perf_report.py": ["--only", "ops", "--no-leaderboard"],
            "crossover.py": ["--only", "exp11", "--no-leaderboard"]}.get(script, [])
    perf = os.path.join(ROOT, "leaderboard", "perf")
    before = _perf_files(perf)
    prog = script[:-3]
    # the crossover sweep imports perf_report's runner: it runs as a module, as the README says
    command = ["-m", f"benchmarks.{prog}"] if script == "crossover.py" else [os.path.join(ROOT, "benchmarks", script)]
    proc = subprocess.run([sys.executable, *command, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ROUTING_ZOO_ALLOCATOR='jemalloc'"), proc.stderr
    # nothing measured, nothing written
    assert _perf_files(perf) == before


def test_bench_records_the_allocator(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--models", "dhvn_nano", "--batch-size", "2",
                           "--warmup", "0", "--iters", "1", "--json-out", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    want = "glibc mallopt" if platform.libc_ver()[0] == "glibc" else "system"
    assert json.loads(out.read_text())["results"][0]["conditions"]["allocator"] == want
