"""The Performance section shows Exp11's FLOPs under both attention conventions."""
import json

from leaderboard.performance import performance_section


def test_the_conventions_table_renders_from_its_perf_file(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "perf").mkdir()
    doc = dict(benchmark="flop_conventions", model="exp11_dynamic_tiny.pydocs", command="python -m x",
               conditions=dict(threads=1, torch="2.x", git_sha="abc"),
               results=[dict(T=256, sequences=16, tokens=4096,
                             allowed=dict(executed_mflops_per_token=2.409, dense_mflops_per_token=2.552, saved=0.056),
                             computed=dict(executed_mflops_per_token=2.552, dense_mflops_per_token=2.748, saved=0.071),
                             dense_causal_computed_over_allowed=1.99,
                             packed_layers=[dict(computed_over_allowed=2.39), dict(computed_over_allowed=2.51)])])
    (tmp_path / "perf" / "flop_conventions.json").write_text(json.dumps(doc))
    md = performance_section(tmp_path / "results")
    assert "### FLOPs under both attention conventions" in md
    row = next(line for line in md.splitlines() if line.startswith("| 256"))
    assert [c.strip() for c in row.strip("|").split("|")] == ["256", "2.409", "2.552", "5.6%", "2.552", "2.748", "7.1%",
                                                              "1.99x", "2.39x / 2.51x"]
    assert "`flop_conventions.json`: `python -m x`" in md
