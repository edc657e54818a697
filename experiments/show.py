"""Summarise quick_train JSON lines: python -m experiments.show out.jsonl"""
import json
import sys

for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except json.JSONDecodeError:
        continue
    q = f"top1 {d['top1']:.1f}" if "top1" in d else f"bpb {d['bpb']:.3f}"
    fl = d.get("flops", {})
    sh = "; ".join(f"{k.split('.')[0][0]}{k.split('.')[-1]}:" + "/".join(f"{int(100*v)}" for v in s.values())
                   for k, s in (d.get("shares") or {}).items())
    print(f"{d['model']:22s} {d['tag']:10s} lr {d['lr']:g} it {d['iters']} b {d['batch']} s{d['seed']} | {q} | "
          f"tl {d.get('train_loss', float('nan')):.3f} {d['s_per_it']:.3f}s/it wall {d['wall_s']:.0f} | saved {fl.get('saved', '-')} exec {fl.get('exec', 0):.3g} | "
          f"{sh} {json.dumps(d['kw']) if d['kw'] else ''} {json.dumps(d['aux']) if d['aux'] else ''} load {d['load']:.1f}")
    for c in d.get("curve", []):
        print("      ", c.get("it"), c.get("top1", c.get("bpb")))
