"""`python -m harness list`: the zoo models (family, task, routing, params), the shipped
pretrained tags (each a model name every verb takes, `harness.names`) and the suites."""
from __future__ import annotations

__all__ = ["add_parser", "cmd_list"]


def add_parser(subparsers) -> str:
    p = subparsers.add_parser("list", help="list models (with family, task, routing, params), shipped tags and suites",
                              description="List zoo models matching PATTERNs (fnmatch; default all), the shipped "
                                          "pretrained tags of those models (or matching a PATTERN), and the "
                                          "suites. Any timm model also works as timm:NAME.")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", default=["*"],
                   help="zoo model names or fnmatch patterns (quote them), e.g. 'dhvn_*'; default all")
    p.set_defaults(func=cmd_list)
    return "list"


def _tags(patterns) -> list:
    """The shipped tags whose own name or whose model matches a pattern."""
    import fnmatch

    from zoo.pretrained import PRETRAINED
    return [t for name, t in PRETRAINED.items()
            if any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(t.model, p) for p in patterns)]


def _tag_rows(tags) -> list:
    import os
    return [[t.name, t.model, t.tag, f"{os.path.getsize(t.file) / 2**20:.2f} MiB", t.source] for t in tags]


def cmd_list(args, argv=()) -> int:
    import zoo
    from tabulate import tabulate

    from ..suites import SUITES

    names = zoo.list_models(args.patterns)
    tags = _tags(args.patterns)
    if args.patterns and not names and not tags:
        from ..names import resolve_models
        resolve_models(args.patterns)  # raises the one-line "no model matches ...; closest: ..."
    rows = []
    for n in names:
        info = zoo.model_info(n)
        rows.append([n, info["family"], info["task"], info["routing"], f"{info['params']:,}"])
    if rows:
        print(tabulate(rows, headers=["model", "family", "task", "routing", "params"]))
    elif not tags:
        print(f"no zoo model matches {' '.join(args.patterns)}")
    if tags:
        # a tag is a model name for run, bench, flops and visualize: its weights, on its suite only
        print(f"\nshipped pretrained tags (each a model name, e.g. --models {tags[0].name}, on its own suite)\n")
        print(tabulate(_tag_rows(tags), headers=["tag", "model", "suite", "weights", "trained by"]))
    print("\n(any timm model also works as timm:NAME, e.g. timm:resnet18)\n")
    print(tabulate([[s.name, s.task, s.description] for s in SUITES.values()],
                   headers=["suite", "task", "data"]))
    return 0
