"""`python -m harness list`: the zoo models (family, task, routing, params) and the suites."""
from __future__ import annotations

__all__ = ["add_parser", "cmd_list"]


def add_parser(subparsers) -> str:
    p = subparsers.add_parser("list", help="list models (with family, task, routing, params) and suites",
                              description="List zoo models matching PATTERNs (fnmatch; default all) and the "
                                          "suites. Any timm model also works as timm:NAME.")
    p.add_argument("patterns", nargs="*", metavar="PATTERN", default=["*"])
    p.set_defaults(func=cmd_list)
    return "list"


def cmd_list(args, argv=()) -> int:
    import zoo
    from tabulate import tabulate

    from ..suites import SUITES

    names = zoo.list_models(args.patterns)
    if args.patterns and not names:
        from ..names import resolve_models
        resolve_models(args.patterns)  # raises the one-line "no model matches ...; closest: ..."
    rows = []
    for n in names:
        info = zoo.model_info(n)
        rows.append([n, info["family"], info["task"], info["routing"], f"{info['params']:,}"])
    if rows:
        print(tabulate(rows, headers=["model", "family", "task", "routing", "params"]))
    else:
        print(f"no zoo model matches {' '.join(args.patterns)}")
    print("\n(any timm model also works as timm:NAME, e.g. timm:resnet18)\n")
    print(tabulate([[s.name, s.task, s.description] for s in SUITES.values()],
                   headers=["suite", "task", "data"]))
    return 0
