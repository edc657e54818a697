"""DHVN pictures: which block chooses conv, transformer or both, overall, per class, per sample.

Numbers come from `zoo.routing.trace(net)` after each eval forward (argmax routing, sparse
execution: exactly what the eval metrics saw).
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch

import zoo

from .common import Picture, batches, plt, route_color, save_picture, shares_from_counts

__all__ = ["collect", "draw_all", "gate_heatmap", "sample_grid", "HEATMAP_SIZE", "grid_size",
           "sample_indices"]

HEATMAP_SIZE = (13.0, 5.5)     # inches; at 100 dpi: 1300 x 550 px
GRID_COLS = 8
CELL_W, CELL_H, GRID_EXTRA_H = 1.5, 1.9, 0.9


def grid_size(n: int) -> tuple:
    """Figure size (inches) of the per-sample grid for n images."""
    cols = min(n, GRID_COLS)
    rows = math.ceil(n / cols)
    return (max(cols * CELL_W, 6.0), rows * CELL_H + GRID_EXTRA_H)


def sample_indices(total: int, n: int) -> List[int]:
    """n evenly spaced eval items: label-sorted splits (mnist5k) still show every class."""
    n = min(n, total)
    if n <= 1:
        return [0][:n]
    return sorted(set(torch.linspace(0, total - 1, n).round().long().tolist()))


@torch.no_grad()
def collect(net, dataset, batch_size: int, limit: int, device) -> dict:
    """Per eval item: label, prediction and the decision of every router."""
    layers: List[str] = []
    choices: Sequence[str] = ()
    decisions, labels, preds = [], [], []
    for x, y, _ in batches(dataset, batch_size, limit):
        logits = net(x.to(device))
        records = zoo.routing.trace(net)
        if not layers:
            layers = [r.layer for r in records]
            choices = tuple(records[0].choices)
        decisions.append(torch.stack([r.decisions.cpu() for r in records], dim=1))  # (B, L)
        labels.append(y)
        preds.append(logits.argmax(dim=-1).cpu())
    return dict(layers=layers, choices=list(choices), decisions=torch.cat(decisions),
                labels=torch.cat(labels), preds=torch.cat(preds))


def _shares(dec: torch.Tensor, layers, choices) -> Dict[str, Dict[str, float]]:
    """dec (n, L) -> layer -> choice -> share of the n items."""
    out = {}
    for j, layer in enumerate(layers):
        counts = torch.bincount(dec[:, j], minlength=len(choices))
        out[layer] = shares_from_counts({c: int(v) for c, v in zip(choices, counts)})
    return out


def gate_heatmap(data: dict, classes: Sequence[str], out_dir: str, meta: dict) -> Picture:
    pyplot = plt()
    layers, choices, dec, labels = data["layers"], data["choices"], data["decisions"], data["labels"]
    overall = _shares(dec, layers, choices)
    present = [c for c in range(len(classes)) if bool((labels == c).any())]
    per_class = {classes[c]: _shares(dec[labels == c], layers, choices) for c in present}
    class_counts = {classes[c]: int((labels == c).sum()) for c in present}

    fig, (ax0, ax1) = pyplot.subplots(
        1, 2, figsize=HEATMAP_SIZE, gridspec_kw=dict(width_ratios=[len(choices) + 1.5, len(layers) * len(choices) + 2]))
    grid = torch.tensor([[overall[l][c] for c in choices] for l in layers])
    im = ax0.imshow((100 * grid).numpy(), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax0.set_xticks(range(len(choices)), choices)
    ax0.set_yticks(range(len(layers)), layers)
    ax0.set_xlabel("route taken")
    ax0.set_ylabel("routed block (input → output)")
    ax0.set_title(f"all {dec.shape[0]} eval samples")
    _annotate(ax0, 100 * grid)

    cols = [(l, c) for l in layers for c in choices]
    rows = list(per_class)
    pc = torch.tensor([[per_class[k][l][c] for (l, c) in cols] for k in rows]) if rows else torch.zeros(0, len(cols))
    ax1.imshow((100 * pc).numpy(), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax1.set_xticks(range(len(cols)), [c for _, c in cols], rotation=60, ha="right", fontsize=8)
    ax1.set_yticks(range(len(rows)), [f"{k} (n={class_counts[k]})" for k in rows], fontsize=8)
    for j in range(1, len(layers)):
        ax1.axvline(j * len(choices) - 0.5, color="white", lw=2)
    for j, layer in enumerate(layers):
        ax1.text((j + 0.5) * len(choices) - 0.5, -0.8, layer, ha="center", va="bottom", fontsize=9)
    ax1.set_ylabel("true class")
    ax1.set_title("per class", pad=22)
    _annotate(ax1, 100 * pc, fontsize=6)
    fig.colorbar(im, ax=[ax0, ax1], fraction=0.025, pad=0.02, label="share of eval samples (%)")
    fig.suptitle(f"{meta['model']} on {meta['suite']}: gate decisions per block (argmax, eval)")
    fig.subplots_adjust(left=0.1, right=0.88, bottom=0.2, top=0.82, wspace=0.35)
    return save_picture(fig, out_dir, "gate_heatmap", dict(
        meta, kind="dhvn_gate_heatmap", layers=layers, choices=choices, n_samples=int(dec.shape[0]),
        overall=overall, per_class=per_class, class_counts=class_counts,
        units="share of eval samples in [0, 1] (drawn as %)"))


def _annotate(ax, values: torch.Tensor, fontsize: int = 9) -> None:
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = float(values[i, j])
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=fontsize,
                    color="black" if v > 60 else "white")


def sample_grid(net, dataset, data: dict, classes: Sequence[str], n: int, out_dir: str,
                meta: dict) -> Picture:
    """Eval images, each with its route at every block as a coloured strip (C / T / B)."""
    pyplot = plt()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    layers, choices = data["layers"], data["choices"]
    idx = sample_indices(data["decisions"].shape[0], n)
    cols = min(len(idx), GRID_COLS)
    rows = math.ceil(len(idx) / cols)
    fig, axes = pyplot.subplots(rows, cols, figsize=grid_size(len(idx)), squeeze=False)
    fig.subplots_adjust(left=0.03, right=0.97, bottom=0.12, top=1 - 0.55 / fig.get_size_inches()[1],
                        hspace=0.3, wspace=0.15)
    cmap = ListedColormap([route_color(i) for i, c in enumerate(choices)])
    samples = []
    for ax in axes.flat:
        ax.axis("off")
    for k, i in enumerate(idx):
        ax = axes.flat[k]
        img = net.pixels(dataset[i]["inputs"].unsqueeze(0).float())[0]
        H, W = img.shape[-2:]
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, extent=(0, W, H, 0))
        else:
            ax.imshow(img[:3].permute(1, 2, 0).numpy(), extent=(0, W, H, 0))
        label, pred = int(data["labels"][i]), int(data["preds"][i])
        ax.set_title(f"y={classes[label]} ŷ={classes[pred]}", fontsize=8,
                     color="black" if label == pred else "#C44E52")
        # the route strip sits in the same axes, just under the image: one cell per block
        route = data["decisions"][i]
        top, height = H * 1.06, H * 0.22
        ax.imshow(route.view(1, -1).numpy(), cmap=cmap, vmin=-0.5, vmax=len(choices) - 0.5,
                  extent=(0, W, top + height, top), interpolation="nearest")
        cell = W / len(layers)
        for j, d in enumerate(route.tolist()):
            ax.text((j + 0.5) * cell, top + height / 2, choices[d][0].upper(), ha="center", va="center",
                    fontsize=8, color="white")
        ax.set_xlim(0, W)
        ax.set_ylim(top + height, 0)
        samples.append(dict(index=i, label=classes[label], pred=classes[pred],
                            route={l: choices[d] for l, d in zip(layers, route.tolist())}))
    fig.legend(handles=[Patch(color=route_color(i), label=c) for i, c in enumerate(choices)],
               loc="lower center", ncol=len(choices), fontsize=9, frameon=False)
    fig.suptitle(f"{meta['model']}: route per block, left → right: {', '.join(layers)}", fontsize=10)
    return save_picture(fig, out_dir, "sample_routes", dict(
        meta, kind="dhvn_sample_routes", layers=layers, choices=choices, samples=samples))


def draw_all(net, dataset, classes, n: int, out_dir: str, meta: dict, batch_size: int, limit: int,
             device) -> List[Picture]:
    data = collect(net, dataset, batch_size, limit, device)
    return [gate_heatmap(data, classes, out_dir, meta),
            sample_grid(net, dataset, data, classes, n, out_dir, meta)]
