"""Outputs a user names are never renamed over what is there: an existing path that is not a
regular file (a fifo standing in for /dev/null, a folder) is refused in one line and left as it
was; a symlink is written through (its target replaced, the link kept); a dangling one is
refused. The leaderboard refuses a results dir that holds its page, and a page that would be
read back as results. Real processes (`python -m harness`) where a fault needs one."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from harness_testutils import assert_one_line_error, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORD = dict(model="dhvn_nano", suite="mnist5k", seed=0, task="image-classification",
              metrics=dict(top1=50.0, top5=90.0, loss=1.0))


OLD_PAGE = "# Leaderboard\n\n<!-- GENERATED FILE: do not edit by hand. -->\nold page\n"


def _harness(*argv):
    """(exit code, stderr) of a real `python -m harness` process."""
    p = subprocess.run([sys.executable, "-m", "harness", *map(str, argv)], cwd=REPO, capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL, env=dict(os.environ, MPLBACKEND="Agg"))
    return p.returncode, p.stderr


def _results(tmp_path, records=(RECORD,)):
    d = tmp_path / "board" / "results"
    d.mkdir(parents=True)
    (d / "mnist5k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return d


def _fifo(path):
    os.mkfifo(path)
    return path


def _still_fifo(path):
    return stat.S_ISFIFO(os.lstat(path).st_mode)


def test_leaderboard_out_that_is_a_fifo_or_a_folder_is_refused_and_kept(tmp_path):
    results = _results(tmp_path, records=())
    fifo = _fifo(tmp_path / "page.md")
    code, err = _harness("leaderboard", "--results-dir", results, "--out", fifo)
    assert_one_line_error(code, err, "leaderboard page", "is a fifo", "nothing was written")
    assert _still_fifo(fifo)
    folder = tmp_path / "page_dir.md"
    folder.mkdir()
    code, err = _harness("leaderboard", "--results-dir", results, "--out", folder)
    assert_one_line_error(code, err, "is a folder, not a regular file")
    assert folder.is_dir() and not list(folder.iterdir())


def test_leaderboard_writes_through_a_symlink_and_refuses_a_dangling_one(tmp_path, capsys):
    results = _results(tmp_path, records=())
    target = tmp_path / "real.md"
    target.write_text(OLD_PAGE)  # a page the leaderboard wrote: the only kind it replaces
    link = tmp_path / "link.md"
    link.symlink_to(target)
    code, _, err = run_cli(["leaderboard", "--results-dir", str(results), "--out", str(link)], capsys)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)  # the link stays
    assert "No results yet" in target.read_text()
    dangling = tmp_path / "dangling.md"
    dangling.symlink_to(tmp_path / "missing" / "page.md")
    code, _, err = run_cli(["leaderboard", "--results-dir", str(results), "--out", str(dangling)], capsys)
    assert_one_line_error(code, err, "is a symlink to", "does not exist")
    assert dangling.is_symlink() and not (tmp_path / "missing").exists()


def test_leaderboard_refuses_the_page_folder_as_results_dir_and_a_page_among_the_results(tmp_path):
    results = _results(tmp_path)
    page = tmp_path / "board" / "LEADERBOARD.md"
    page.write_text("the committed page\n")
    code, err = _harness("leaderboard", "--results-dir", page.parent, "--out", page)
    assert_one_line_error(code, err, "holds the leaderboard page, not results", "nothing was written")
    assert page.read_text() == "the committed page\n"
    code, err = _harness("leaderboard", "--results-dir", results, "--out", results / "board.jsonl")
    assert_one_line_error(code, err, "would be read back as results")
    assert sorted(p.name for p in results.iterdir()) == ["mnist5k.jsonl"]


def test_export_out_that_is_a_fifo_a_folder_or_a_bad_name_is_refused(tmp_path, capsys):
    fifo = _fifo(tmp_path / "w.safetensors")
    base = ["export", "--model", "dhvn_nano", "--tag", "mnist5k", "--checkpoint", str(tmp_path / "none.pth"), "--out"]
    code, err = _harness(*base, fifo)
    assert_one_line_error(code, err, "weights file", "is a fifo", "nothing was written")
    assert _still_fifo(fifo)
    for bad, says in ((tmp_path, "is a folder"), (f"{tmp_path}/sub/", "ends in a slash"),
                      (tmp_path / "missing" / ".." / "w.safetensors", "is not a folder"),
                      (tmp_path / ("w" * 300), "at most 255")):
        code, _, err = run_cli(base + [str(bad)], capsys)
        assert_one_line_error(code, err, says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_bench_outputs_are_checked_before_any_timing(tmp_path, capsys):
    fifo = _fifo(tmp_path / "bench.json")
    code, err = _harness("bench", "--models", "dhvn_nano", "--json-out", fifo)
    assert_one_line_error(code, err, "JSON output", "is a fifo", "nothing was timed")
    assert _still_fifo(fifo)
    code, _, err = run_cli(["bench", "--models", "dhvn_nano", "--results-file", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "results file", "is a folder", "nothing was timed")


def test_visualize_and_compare_refuse_an_out_folder_that_is_a_fifo(tmp_path, capsys):
    fifo = _fifo(tmp_path / "pics")
    code, _, err = run_cli(["visualize", "--model", "dhvn_nano", "--checkpoint", str(tmp_path / "none.pth"),
                            "--suite", "mnist5k", "--out", str(fifo)], capsys)
    assert_one_line_error(code, err, "output folder", "is a fifo, not a folder", "nothing was drawn")
    results = _results(tmp_path)
    code, err = _harness("compare", "--models", "dhvn_nano", "--suite", "mnist5k", "--results-dir", results,
                         "--out", fifo)
    assert_one_line_error(code, err, "output folder", "is a fifo, not a folder")
    assert _still_fifo(fifo)


@pytest.mark.parametrize("results", ["", "store.txt", "store"])
def test_run_results_must_be_a_jsonl_store(tmp_path, capsys, results):
    committed = os.path.join(REPO, "leaderboard", "results", "mnist5k.jsonl")
    before = os.path.getsize(committed) if os.path.exists(committed) else None
    code, _, err = run_cli(["run", "--models", "dhvn_nano", "--suite", "mnist5k", "--max-iters", "1",
                            "--work-dir", str(tmp_path / "w"), "--results", results], capsys)
    assert_one_line_error(code, err, "--results", "must end in .jsonl")
    assert (os.path.getsize(committed) if os.path.exists(committed) else None) == before
    assert not (tmp_path / "w").exists()


def test_run_results_that_is_a_fifo_is_refused_before_training(tmp_path):
    fifo = _fifo(tmp_path / "r.jsonl")
    code, err = _harness("run", "--models", "dhvn_nano", "--suite", "mnist5k", "--max-iters", "1",
                         "--work-dir", tmp_path / "w", "--results", fifo,
                         "--cfg-options", "train_dataloader.dataset.limit=16", "test_dataloader.dataset.limit=16")
    assert_one_line_error(code, err, "results store", "is a fifo")
    assert _still_fifo(fifo) and not (tmp_path / "w").exists()


# ---------------------------------------------------------------- files the command did not write


def test_no_command_replaces_a_file_it_did_not_write(tmp_path, capsys):
    """export, leaderboard and bench refuse an --out that is someone else's file (a README, a
    script, notes), in one line, and leave it byte for byte; an empty file holds nothing to lose."""
    results = _results(tmp_path, records=())
    ckpt = tmp_path / "none.pth"
    (tmp_path / "README.md").write_text("precious\n")
    cases = [
        (["export", "--model", "dhvn_nano", "--tag", "mnist5k", "--checkpoint", ckpt, "--out"], "notes.safetensors",
         ["weights file", "is not a weights file written by export", "left as it was", "nothing was written"]),
        (["leaderboard", "--results-dir", results, "--out"], "README.md",
         ["leaderboard page", "is not a leaderboard page", "left as it was"]),
        (["bench", "--models", "dhvn_nano", "--json-out"], "config.json",
         ["JSON output", "is not a JSON file written by bench", "nothing was timed"]),
        (["bench", "--models", "dhvn_nano", "--results-file"], "data.csv",
         ["results file", "is not a CSV file written by bench", "nothing was timed"]),
    ]
    code, err = _harness(*cases[0][0], tmp_path / "README.md")  # and once as a real process
    assert_one_line_error(code, err, "is not a weights file written by export")
    assert (tmp_path / "README.md").read_text() == "precious\n"
    for argv, name, fragments in cases:
        theirs = tmp_path / name
        theirs.write_bytes(b"# someone's own file\n\xff not ours\n")
        code, _, err = run_cli([*map(str, argv), str(theirs)], capsys)
        assert_one_line_error(code, err, str(theirs), *fragments)
        assert theirs.read_bytes() == b"# someone's own file\n\xff not ours\n"
        # through a symlink too: the link's target is what would be replaced
        link = tmp_path / f"link-{name}"
        link.symlink_to(theirs)
        code, _, err = run_cli([*map(str, argv), str(link)], capsys)
        assert_one_line_error(code, err, "left as it was")
        assert link.is_symlink() and theirs.read_bytes() == b"# someone's own file\n\xff not ours\n"


def test_a_command_replaces_its_own_file_and_an_empty_one(tmp_path, capsys):
    results = _results(tmp_path, records=())
    page = tmp_path / "page.md"
    page.write_bytes(b"")
    for _ in range(2):  # an empty file, then the page it wrote
        code, _, err = run_cli(["leaderboard", "--results-dir", str(results), "--out", str(page)], capsys)
        assert code == 0, err
        assert "GENERATED FILE" in page.read_text()


def test_owner_tests_read_only_a_bounded_head(tmp_path):
    """The export test reads a safetensors header length first: a text file's first 8 bytes make
    an absurd length, refused without reading (or allocating) it."""
    from harness.commands.export import _is_export_file
    from harness.measure.bench_report import is_bench_csv
    text = tmp_path / "t"
    text.write_text("model,a,b\n" + "x" * 100)
    assert not _is_export_file(str(text)) and not is_bench_csv(str(text))
    shipped = os.path.join(REPO, "zoo", "weights", "dhvn_nano.mnist5k.safetensors")
    if os.path.exists(shipped):  # the shipped weights were written by export: re-exporting may replace them
        assert _is_export_file(shipped)


def test_compare_keeps_a_compare_md_it_did_not_write(tmp_path, capsys):
    results = _results(tmp_path)
    out = tmp_path / "notes"
    out.mkdir()
    (out / "compare.md").write_text("my own notes\n")
    code, _, err = run_cli(["compare", "--models", "dhvn_nano", "--suite", "mnist5k", "--results-dir", str(results),
                            "--out", str(out)], capsys)
    assert_one_line_error(code, err, "comparison page", "is not a page written by compare", "nothing was drawn")
    assert sorted(p.name for p in out.iterdir()) == ["compare.md"]
    assert (out / "compare.md").read_text() == "my own notes\n"
    (out / "compare.md").unlink()
    for _ in range(2):  # a new page, then its own page again
        code, _, err = run_cli(["compare", "--models", "dhvn_nano", "--suite", "mnist5k", "--results-dir",
                                str(results), "--out", str(out)], capsys)
        assert code == 0, err
