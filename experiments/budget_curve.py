"""Top-1 against executed FLOPs of one saved quick_train model under zoo.routing.flops_budget.

    python -m experiments.budget_curve /tmp/exp/dhvn.pt 0.3 0.5 0.7 1.0
"""
import json
import sys

import torch


def main():
    import zoo
    from harness.suites.mnist5k import Mnist5k
    torch.set_num_threads(1)
    ck = torch.load(sys.argv[1], weights_only=True)
    m = zoo.create_model(ck["model"], **ck["kw"])
    m.load_state_dict(ck["state_dict"])
    m.eval()
    train, test = Mnist5k("train"), Mnist5k("test")
    calib = train.images[torch.linspace(0, len(train) - 1, 256).round().long()]
    fits = zoo.routing.fit_budgets(m, [float(b) for b in sys.argv[2:]], calib)
    out = []
    for fit in fits:
        with torch.no_grad(), zoo.routing.flops_budget(m, fit):
            top1 = float((m(test.images).argmax(-1) == test.labels).float().mean()) * 100
            rep = zoo.flops.flops_report(m, test.images[::4])
        out.append(dict(budget=fit.target, calib=round(fit.fraction, 3), test_fraction=round(rep["executed"] / rep["dense"], 3),
                        top1=round(top1, 2), gflops=round(rep["executed_per_item"] / 1e9, 5)))
    print(json.dumps(dict(model=ck["model"], path=sys.argv[1], curve=out)))


if __name__ == "__main__":
    main()
