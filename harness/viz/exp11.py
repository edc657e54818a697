"""Exp11 pictures: which tokens each routed layer sends to Gated DeltaNet or softmax attention.

Decisions come from `zoo.routing.trace(net)` after each eval forward (argmax per token,
sparse execution). Fixed layers are read from the model's spec (`net.spec.layers`).
Tokens are bytes (the embedded `pydocs` suite); they are drawn as characters, with a newline
as ↵ and any byte outside printable ASCII as •.
"""
from __future__ import annotations

import math
from typing import List

import torch

import zoo

from .common import Picture, batches, plt, route_color, save_picture, shares_from_counts

__all__ = ["collect", "draw_all", "token_routes", "layer_shares", "share_vs_position",
           "CHARS_PER_ROW", "MAX_TEXTS", "token_size", "SHARES_SIZE", "POSITION_SIZE"]

CHARS_PER_ROW = 64
MAX_TEXTS = 4
ROW_H = 0.28
SHARES_SIZE = (8.0, 4.5)
POSITION_SIZE = (10.0, 4.5)


def token_size(texts: int, layers: int, tokens: int) -> tuple:
    rows = math.ceil(tokens / CHARS_PER_ROW)
    return (CHARS_PER_ROW * 0.16 + 1.0, texts * layers * (rows * ROW_H + 0.45) + 1.0)


def char_of(token: int) -> str:
    if token == 10:
        return "↵"
    return chr(token) if 32 <= token < 127 else "•"


@torch.no_grad()
def collect(net, dataset, batch_size: int, limit: int, device) -> dict:
    """Per routed layer: decisions (items, T) over the eval windows, and the windows' tokens."""
    layers, choices, decisions, tokens = [], (), [], []
    for x, _, _ in batches(dataset, batch_size, limit):
        net(x.to(device))
        records = zoo.routing.trace(net)
        layers = [r.layer for r in records]
        choices = tuple(records[0].choices)
        decisions.append(torch.stack([r.decisions.cpu() for r in records], dim=0))  # (L, B, T)
        tokens.append(x)
    return dict(layers=layers, choices=list(choices), decisions=torch.cat(decisions, dim=1),
                tokens=torch.cat(tokens), plan=list(net.spec.layers))


def token_routes(data: dict, n: int, out_dir: str, meta: dict) -> Picture:
    """The first min(n, MAX_TEXTS) eval texts, each token boxed in its route's colour, per routed layer."""
    pyplot = plt()
    from matplotlib.patches import Patch, Rectangle
    layers, choices = data["layers"], data["choices"]
    texts = min(n, MAX_TEXTS, data["tokens"].shape[0])
    T = data["tokens"].shape[1]
    rows = math.ceil(T / CHARS_PER_ROW)
    fig, axes = pyplot.subplots(texts * len(layers), 1, figsize=token_size(texts, len(layers), T), squeeze=False)
    drawn = []
    for t in range(texts):
        ids = data["tokens"][t].tolist()
        entry = dict(index=t, tokens=ids, text="".join(char_of(i) for i in ids), routes={})
        for j, layer in enumerate(layers):
            ax = axes[t * len(layers) + j, 0]
            dec = data["decisions"][j, t].tolist()
            for k, (tok, d) in enumerate(zip(ids, dec)):
                r, c = divmod(k, CHARS_PER_ROW)
                ax.add_patch(Rectangle((c, r), 1, 1, facecolor=route_color(d), alpha=0.55, lw=0))
                ax.text(c + 0.5, r + 0.55, char_of(tok), ha="center", va="center", fontsize=7, family="monospace")
            ax.set_xlim(0, CHARS_PER_ROW)
            ax.set_ylim(rows, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            share = {c: float(sum(1 for d in dec if d == i)) / len(dec) for i, c in enumerate(choices)}
            ax.set_title(f"eval text {t}, {layer}: " + ", ".join(f"{c} {100 * s:.0f}%" for c, s in share.items()),
                         fontsize=8, loc="left")
            entry["routes"][layer] = [choices[d] for d in dec]
        drawn.append(entry)
    fig.legend(handles=[Patch(color=route_color(i), alpha=0.55, label=c) for i, c in enumerate(choices)],
               loc="lower center", ncol=len(choices), fontsize=9, frameon=False)
    fig.suptitle(f"{meta['model']} on {meta['suite']}: route of every token (byte), per routed layer", fontsize=10)
    h = fig.get_size_inches()[1]
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.55 / h, bottom=0.45 / h, hspace=0.45)
    return save_picture(fig, out_dir, "token_routes", dict(
        meta, kind="exp11_token_routes", layers=layers, choices=choices, texts=drawn,
        chars_per_row=CHARS_PER_ROW))


def _layer_table(data: dict) -> List[dict]:
    """Every layer of the plan: fixed ones at 100% of their mixer, routed ones from the trace."""
    choices, dec = data["choices"], data["decisions"]
    routed = {l: j for j, l in enumerate(data["layers"])}
    rows = []
    for i, kind in enumerate(data["plan"]):
        name = f"layers.{i}"
        if name in routed:
            counts = torch.bincount(dec[routed[name]].reshape(-1), minlength=len(choices))
            rows.append(dict(layer=name, kind="routed", tokens=int(dec[routed[name]].numel()),
                             share=shares_from_counts({c: int(v) for c, v in zip(choices, counts)})))
        else:
            rows.append(dict(layer=name, kind=f"fixed {kind}",
                             share={c: float(c == kind) for c in choices}))
    return rows


def layer_shares(data: dict, out_dir: str, meta: dict) -> Picture:
    pyplot = plt()
    choices = data["choices"]
    rows = _layer_table(data)
    fig, ax = pyplot.subplots(figsize=SHARES_SIZE)
    left = [0.0] * len(rows)
    for i, c in enumerate(choices):
        vals = [100 * r["share"][c] for r in rows]
        bars = ax.barh(range(len(rows)), vals, left=left, color=route_color(i), label=c,
                       hatch=None, edgecolor="white")
        for b, r in zip(bars, rows):
            if r["kind"] != "routed":
                b.set_alpha(0.45)
                b.set_hatch("//")
        for k, v in enumerate(vals):
            if v >= 6:
                ax.text(left[k] + v / 2, k, f"{v:.1f}%", ha="center", va="center", fontsize=9, color="white")
        left = [l + v for l, v in zip(left, vals)]
    ax.set_yticks(range(len(rows)), [f"{r['layer']} ({r['kind']})" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of eval tokens (%)")
    ax.set_title(f"{meta['model']} on {meta['suite']}: mixer per layer "
                 f"({data['decisions'].shape[1]} eval texts x {data['decisions'].shape[2]} tokens)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.subplots_adjust(left=0.3, right=0.97, top=0.88, bottom=0.14)
    return save_picture(fig, out_dir, "layer_shares", dict(
        meta, kind="exp11_layer_shares", choices=choices, layers=rows,
        units="share of eval tokens in [0, 1] (drawn as %)"))


def share_vs_position(data: dict, out_dir: str, meta: dict) -> Picture:
    """Per routed layer: share of eval texts whose token at position t went to softmax."""
    pyplot = plt()
    choices, dec = data["choices"], data["decisions"]
    target = "softmax" if "softmax" in choices else choices[-1]
    k = choices.index(target)
    fig, ax = pyplot.subplots(figsize=POSITION_SIZE)
    series = {}
    styles = ["-", "--", ":", "-."]
    for j, layer in enumerate(data["layers"]):
        per_pos = (dec[j] == k).double().mean(dim=0)            # (T,)
        overall = float((dec[j] == k).double().mean())
        ax.plot(range(per_pos.numel()), (100 * per_pos).numpy(), styles[j % 4], lw=1.2, label=f"{layer} (mean {100 * overall:.1f}%)")
        series[layer] = dict(share_per_position=per_pos, mean_share=overall)
    ax.set_xlabel("token position in the eval text (0 = first byte)")
    ax.set_ylabel(f"tokens routed to {target} (% of eval texts)")
    ax.set_ylim(-2, 102)
    ax.set_xlim(0, dec.shape[2] - 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{meta['model']} on {meta['suite']}: routing share vs position ({dec.shape[1]} eval texts)",
                 fontsize=10)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.13)
    return save_picture(fig, out_dir, "share_vs_position", dict(
        meta, kind="exp11_share_vs_position", choice=target, texts=int(dec.shape[1]), layers=series,
        units=f"share of eval texts routing the token at each position to {target}, in [0, 1]"))


def draw_all(net, dataset, classes, n: int, out_dir: str, meta: dict, batch_size: int, limit: int,
             device) -> List[Picture]:
    """Every Exp11 picture (`classes`, which an LM's eval split does not have, is unused)."""
    data = collect(net, dataset, batch_size, limit, device)
    return [token_routes(data, n, out_dir, meta), layer_shares(data, out_dir, meta),
            share_vs_position(data, out_dir, meta)]
