"""Results in, markdown out: the JSONL results store and the generated leaderboard.

The harness imports this package (never the reverse):

    append_record(path, record)                      one run -> one JSON line, process-safe
    read_records(path) -> (records, problems)         malformed lines reported, not dropped
    build_leaderboard(results_dir, extra_sections) -> (markdown, problems)
    write_leaderboard(results_dir, out_path, extra_sections) -> problems
    check_leaderboard(results_dir, out_path, extra_sections) -> bool (False when stale)

The record schema is documented in `leaderboard.store`; aggregation rules in
`leaderboard.aggregate`.
"""
from .aggregate import TASK_SPECS, load_results, summarize
from .render import build_leaderboard, check_leaderboard, write_leaderboard
from .store import REQUIRED_FIELDS, append_record, read_records

__all__ = ["REQUIRED_FIELDS", "TASK_SPECS", "append_record", "read_records", "load_results",
           "summarize", "build_leaderboard", "write_leaderboard", "check_leaderboard"]
