"""ESH-Vision pictures: where patches go to attention (alpha), why (entropy prior), who ponders.

Sources, all from one eval forward per batch:
  * alpha per block: `zoo.routing.trace(net)` records (binary router: probs[..., 1] is alpha,
    decisions are alpha > 0.5), the same values `forward_dict(x)["alphas"]` documents;
  * entropy prior: `forward_dict(x)["block_entropy"]`, the prior each block's router read;
  * ponder count: extra ACT steps per patch, `forward_dict(x)["ponder_steps"]`;
  * the images themselves: `net.pixels(x)`, the model's inputs back in [0, 1].
"""
from __future__ import annotations

import math
from typing import List

import torch

import zoo

from .common import Picture, batches, plt, route_color, save_picture
from .dhvn import sample_indices

__all__ = ["collect", "draw_all", "alpha_maps", "alpha_histograms", "maps_size", "hist_size", "BINS"]

BINS = 20
MAP_CELL = 1.6     # inches per image cell


def maps_size(n: int, stages: int) -> tuple:
    return (MAP_CELL * (1 + 3 * stages) + 0.6, MAP_CELL * n + 1.2)


def hist_size(blocks: int) -> tuple:
    cols = min(blocks, 4)
    return (3.2 * cols + 0.4, 2.8 * math.ceil(blocks / cols) + 0.9)


def _stage_of(layer: str) -> int:
    return int(layer.split(".")[1])  # "stages.<i>.blocks.<j>"


@torch.no_grad()
def collect(net, dataset, batch_size: int, limit: int, device, keep: List[int]) -> dict:
    """alpha and decisions of every block over the eval items; maps of the `keep` items."""
    keep = set(keep)
    layers, alphas, decisions = [], [], []
    kept = dict(alpha=[], entropy=[], steps=[], index=[])
    for x, _, idx in batches(dataset, batch_size, limit):
        out = net.forward_dict(x.to(device))
        records = zoo.routing.trace(net)
        layers = [r.layer for r in records]
        alphas.append([r.probs[..., 1].float().cpu().reshape(-1) for r in records])  # blocks differ in N
        decisions.append(torch.stack([(r.decisions == r.choices.index("attention")).sum().cpu()
                                      for r in records]))
        sel = [k for k, i in enumerate(idx) if i in keep]
        if not sel:
            continue
        # the prior each block's router read, one per stage (the blocks of a stage share it)
        first = {}
        for j, r in enumerate(records):
            first.setdefault(_stage_of(r.layer), j)
        priors = [out["block_entropy"][j].float().cpu() for j in first.values()]
        steps = out["ponder_steps"]
        for k in sel:
            kept["index"].append(idx[k])
            kept["alpha"].append([r.probs[k, :, 1].float().cpu() for r in records])
            kept["entropy"].append([_grid(p[k]) for p in priors])
            kept["steps"].append([st[k].cpu() for st in steps] if steps else
                                 [torch.zeros_like(a) for a in kept["alpha"][-1]])
    # per block: alpha of every patch of every eval image
    per_block = [torch.cat([a[j] for a in alphas]) for j in range(len(layers))]
    return dict(layers=layers, alphas=per_block, attention_counts=torch.stack(decisions).sum(0),
                kept=kept, ponder_threshold=float(net.spec.act.threshold),
                act_enabled=bool(net.spec.act.enabled))


def _grid(v: torch.Tensor) -> torch.Tensor:
    side = math.isqrt(v.numel())
    return v.view(side, side) if side * side == v.numel() else v.view(1, -1)


def alpha_maps(net, dataset, data: dict, classes, out_dir: str, meta: dict) -> Picture:
    """Per image (rows) and stage: alpha over the image, entropy prior, ponder steps."""
    pyplot = plt()
    layers, kept = data["layers"], data["kept"]
    stages = sorted({_stage_of(l) for l in layers})
    n = len(kept["index"])
    fig, axes = pyplot.subplots(n, 1 + 3 * len(stages), figsize=maps_size(n, len(stages)), squeeze=False)
    max_steps = max([int(s.max()) for row in kept["steps"] for s in row] + [1])
    images, last = [], {}
    for r, i in enumerate(kept["index"]):
        item = dataset[i]
        img = net.pixels(item["inputs"].unsqueeze(0).float())[0]
        shown = (img[0] if img.shape[0] == 1 else img[:3].permute(1, 2, 0)).numpy()
        ax = axes[r, 0]
        ax.imshow(shown, cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
        ax.set_title(f"label {classes[int(item['data_samples'])]}" if classes else f"item {i}", fontsize=8)
        H, W = img.shape[-2:]
        entry = dict(index=i, stages={})
        for s in stages:
            blocks = [j for j, l in enumerate(layers) if _stage_of(l) == s]
            alpha = torch.stack([kept["alpha"][r][j] for j in blocks]).mean(0)
            steps = torch.stack([kept["steps"][r][j] for j in blocks]).sum(0)
            ent = kept["entropy"][r][s]
            a_ax, e_ax, p_ax = axes[r, 1 + 3 * s: 4 + 3 * s]
            a_ax.imshow(shown, cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
            last["alpha"] = a_ax.imshow(_grid(alpha).numpy(), cmap="coolwarm", vmin=0, vmax=1, alpha=0.6,
                                        extent=(-0.5, W - 0.5, H - 0.5, -0.5), interpolation="nearest")
            last["entropy"] = e_ax.imshow(ent.numpy(), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            last["steps"] = p_ax.imshow(_grid(steps.float()).numpy(), cmap="Greens", vmin=0, vmax=max_steps,
                                        interpolation="nearest")
            if r == 0:
                many = f"\nmean of {len(blocks)} blocks" if len(blocks) > 1 else "\n1 block"
                a_ax.set_title(f"stage {s}: α{many}", fontsize=8)
                e_ax.set_title(f"stage {s}:\nentropy prior", fontsize=8)
                p_ax.set_title(f"stage {s}: ponder steps{many.replace('mean', 'sum')}", fontsize=8)
            entry["stages"][str(s)] = dict(blocks=[layers[j] for j in blocks], alpha_mean=_grid(alpha),
                                           entropy=ent, ponder_steps_sum=_grid(steps))
        images.append(entry)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(left=0.02, right=0.9, top=1 - 0.8 / fig.get_size_inches()[1], bottom=0.02,
                        wspace=0.08, hspace=0.25)
    for k, (key, label) in enumerate((("alpha", "α = P(attention)"), ("entropy", "entropy prior"),
                                      ("steps", "extra ACT steps"))):
        cax = fig.add_axes([0.915, 0.08 + (2 - k) * 0.3, 0.012, 0.24])
        fig.colorbar(last[key], cax=cax).set_label(label, fontsize=7)
    fig.suptitle(f"{meta['model']} on {meta['suite']}: α, entropy prior and pondering per patch (eval)", fontsize=10)
    return save_picture(fig, out_dir, "alpha_maps", dict(
        meta, kind="eshvision_alpha_maps", layers=layers, images=images,
        ponder_threshold=data["ponder_threshold"], act_enabled=data["act_enabled"],
        units=dict(alpha="probability of attention in [0, 1]", entropy="normalised entropy in [0, 1]",
                   ponder_steps_sum="extra ACT steps per patch, summed over the stage's blocks")))


def alpha_histograms(data: dict, out_dir: str, meta: dict) -> Picture:
    """Per block: histogram of alpha over every eval patch; decisive routing piles up at 0 and 1."""
    pyplot = plt()
    layers, alphas = data["layers"], data["alphas"]
    cols = min(len(layers), 4)
    rows = math.ceil(len(layers) / cols)
    fig, axes = pyplot.subplots(rows, cols, figsize=hist_size(len(layers)), squeeze=False)
    edges = torch.linspace(0, 1, BINS + 1)
    blocks = {}
    for j, layer in enumerate(layers):
        a = alphas[j]
        counts = torch.histc(a, bins=BINS, min=0.0, max=1.0)
        ax = axes.flat[j]
        ax.bar(edges[:-1].numpy(), (counts / a.numel()).numpy(), width=1.0 / BINS, align="edge",
               color=route_color(1), edgecolor="white")  # "attention": choices are (ssm, attention)
        ax.axvline(0.5, color="black", ls="--", lw=1, label="route threshold 0.5")
        if data["act_enabled"]:
            ax.axvline(data["ponder_threshold"], color="#55A868", ls=":", lw=1.5,
                       label=f"ponder threshold {data['ponder_threshold']:g}")
        share = float(data["attention_counts"][j]) / a.numel()
        decisive = float(((a < 0.1) | (a > 0.9)).float().mean())
        ax.set_title(f"{layer}\nattention {100 * share:.1f}%, decisive (α<0.1 or >0.9) {100 * decisive:.1f}%",
                     fontsize=8)
        ax.set_xlabel("α (probability of attention)")
        ax.set_ylabel("share of eval patches")
        ax.set_xlim(0, 1)
        blocks[layer] = dict(bin_edges=edges, share_per_bin=counts / a.numel(), patches=int(a.numel()),
                             attention_share=share, decisive_share=decisive, mean_alpha=float(a.mean()))
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{meta['model']} on {meta['suite']}: α per block over all eval patches", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.9 / fig.get_size_inches()[1], bottom=0.14,
                        wspace=0.35, hspace=0.6)
    return save_picture(fig, out_dir, "alpha_histograms", dict(
        meta, kind="eshvision_alpha_histograms", layers=layers, bins=BINS, blocks=blocks))


def draw_all(net, dataset, classes, n: int, out_dir: str, meta: dict, batch_size: int, limit: int,
             device) -> List[Picture]:
    total = len(dataset) if not limit else min(limit, len(dataset))
    data = collect(net, dataset, batch_size, limit, device, keep=sample_indices(total, n))
    return [alpha_maps(net, dataset, data, classes, out_dir, meta), alpha_histograms(data, out_dir, meta)]
