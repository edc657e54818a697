"""Time the ImageNet recipe's training step per model, and the epoch it implies.

    python -m benchmarks.bench_train_step --models dhvn_tiny eshvision_s            # CPU, batch 8
    python -m benchmarks.bench_train_step --models 'dhvn_*' --device cuda --batch-size 128 --amp

One step is what `python -m harness run --suite imagenet` runs: mixup/cutmix soft targets, the
forward, SoftTargetCrossEntropy plus the weighted auxiliary losses, backward, AdamW, at 224 x 224,
channels-last, bf16 autocast with --amp on CUDA. Data loading is not timed (synthetic uint8-range
images of the right shape): the figure is the model's cost, the floor of the epoch time.
The epoch estimate is 1,281,167 training images / (images per second x GPUs), which assumes
linear scaling across GPUs (an upper bound on speed).
Warm-up steps are dropped; the median, min and max of the timed steps are printed, with the
thread count and the load average before and after.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

IMAGENET_TRAIN = 1_281_167


def _load() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["dhvn_tiny", "eshvision_s"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--gpus", type=int, default=8, help="devices for the second epoch estimate")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    from harness.runtime import tune_allocator_or_exit
    tune_allocator_or_exit("bench_train_step")

    import torch
    import zoo
    from harness.errors import HarnessError
    from harness.engine.wrappers import ZooClassifier

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_train_step: error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    names = zoo.list_models(args.models, tags={"task": "image-classification"})
    if not names:
        print(f"bench_train_step: error: no zoo vision model matches {' '.join(args.models)}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    print(f"device {args.device}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.img_size}px, amp {args.amp}, load before {_load()}")
    unit = "GPU" if device.type == "cuda" else "host"
    print(f"{'model':<22}{'img/s':>9}{'step s (min/med/max)':>26}{f'epoch, 1 {unit}':>15}"
          f"{f'epoch, {args.gpus} {unit}s':>16}")
    for name in names:
        model = ZooClassifier(arch=name, arch_kwargs=dict(num_classes=1000, img_size=args.img_size),
                              label_smoothing=0.1, channels_last=True,
                              data_preprocessor=dict(type="MixupPreprocessor", channels_last=True),
                              aux_weights=dict(load_balance=0.0, budget=1.0, ponder=0.01,
                                               alpha_variance=0.1, gate_entropy=0.01)).to(device).train()
        optim = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
        g = torch.Generator().manual_seed(0)
        batch = dict(inputs=torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=g),
                     data_samples=torch.randint(0, 1000, (args.batch_size,), generator=g))
        times = []
        try:
            for i in range(args.warmup + args.steps):
                data = model.data_preprocessor(dict(batch), training=True)
                sync()
                t0 = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                    losses = model(data["inputs"], data["data_samples"], mode="loss")
                loss = sum(losses.values())
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                sync()
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
        except HarnessError as e:
            print(f"bench_train_step: error: {e}", file=sys.stderr)
            return 2
        med = statistics.median(times)
        ips = args.batch_size / med
        hours = IMAGENET_TRAIN / ips / 3600
        print(f"{name:<22}{ips:>9.1f}{f'{min(times):.3f} / {med:.3f} / {max(times):.3f}':>26}"
              f"{f'{hours:.3g} h':>15}{f'{hours / args.gpus:.3g} h':>16}")
        del model, optim
    print(f"load after {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
