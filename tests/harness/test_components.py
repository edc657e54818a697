"""Hooks, metrics, model wrappers and checkpoint loading, without a full training run."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import harness  # noqa: F401  (registers everything)
from harness.errors import HarnessError
from harness.engine.hooks import AuxWeightScheduleHook, NaNGuardHook, TauScheduleHook, ramp_weight, tau_at
from harness.engine.metrics import ClassificationMetric, LMMetric, RoutingMetric
from harness.engine.wrappers import ZooClassifier, ZooLM

VISION_KW = dict(num_classes=10, in_chans=1, img_size=28, mean=(0.1307,), std=(0.3081,))
AUX = dict(load_balance=0.5, budget=1.0, ponder=0.01, alpha_variance=0.1, gate_entropy=0.01)


# ---------------------------------------------------------------- schedules


@given(start=st.floats(0.2, 10), end=st.floats(0.1, 5), p=st.floats(0, 1))
def test_tau_schedules_stay_between_their_endpoints(start, end, p):
    for schedule in ("cosine", "exponential"):
        assert tau_at(0.0, start, end, schedule) == pytest.approx(start)
        assert tau_at(1.0, start, end, schedule) == pytest.approx(end)
        assert min(start, end) - 1e-9 <= tau_at(p, start, end, schedule) <= max(start, end) + 1e-9


@given(p=st.floats(0, 1), q=st.floats(0, 1))
def test_ramp_weight_is_zero_then_monotone(p, q):
    w = lambda x: ramp_weight(x, value=0.01, begin=0.3, end=0.6)  # noqa: E731
    assert w(0.29) == 0.0 and w(0.6) == 0.01 and w(1.0) == 0.01
    if p <= q:
        assert w(p) <= w(q)


def _runner(model, it, max_iters, grad_norm=None):
    from mmengine.logging.history_buffer import HistoryBuffer
    scalars = {} if grad_norm is None else {"train/grad_norm": HistoryBuffer([grad_norm], [1])}
    return SimpleNamespace(model=model, iter=it, max_iters=max_iters, epoch=0,
                           message_hub=SimpleNamespace(log_scalars=scalars))


def test_tau_hook_sets_every_router_and_saves_its_state():
    import zoo
    model = ZooClassifier("dhvn_nano", arch_kwargs=VISION_KW, aux_weights=AUX)
    hook = TauScheduleHook(start=2.0, end=0.5, schedule="exponential")
    hook.before_train_iter(_runner(model, 0, 11), 0)
    assert zoo.routing.get_tau(model) == pytest.approx(2.0)
    hook.before_train_iter(_runner(model, 10, 11), 0)
    assert all(float(r.tau) == pytest.approx(0.5) for r in zoo.routing.routers(model))
    ckpt = {"meta": {}}
    hook.before_save_checkpoint(None, ckpt)
    fresh = TauScheduleHook(start=2.0, end=0.5, schedule="exponential")
    other = ZooClassifier("dhvn_nano", arch_kwargs=VISION_KW, aux_weights=AUX)
    fresh.after_load_checkpoint(_runner(other, 0, 11), ckpt)
    assert fresh.tau == pytest.approx(0.5) and zoo.routing.get_tau(other) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        TauScheduleHook(schedule="linearish")


def test_aux_weight_hook_ramps_ponder_only():
    model = ZooClassifier("eshvision_xs", arch_kwargs=VISION_KW, aux_weights=AUX)
    hook = AuxWeightScheduleHook(schedules=dict(ponder=dict(value=0.02, begin=0.5, end=1.0)))
    seen = []
    for it in range(11):
        hook.before_train_iter(_runner(model, it, 11), it)
        seen.append(model.aux_weights["ponder"])
        assert model.aux_weights["alpha_variance"] == 0.1
    assert seen[:6] == [0.0] * 6 and seen[-1] == pytest.approx(0.02)
    assert all(a <= b for a, b in zip(seen, seen[1:]))


def test_nan_guard_names_the_iteration():
    guard = NaNGuardHook()
    guard.after_train_iter(_runner(None, 4, 10), 4, outputs={"loss": torch.tensor(1.0)})
    with pytest.raises(HarnessError, match=r"non-finite loss at iteration 5 .*loss_ce=nan"):
        guard.after_train_iter(_runner(None, 4, 10), 4,
                               outputs={"loss": torch.tensor(float("nan")), "loss_ce": torch.tensor(float("nan"))})
    # NaN gradients with a finite loss: caught one step before the loss would show it
    guard.after_train_iter(_runner(None, 6, 10, grad_norm=1.5), 6, outputs={"loss": torch.tensor(1.0)})
    with pytest.raises(HarnessError, match=r"non-finite gradient norm \(nan\) at iteration 7"):
        guard.after_train_iter(_runner(None, 6, 10, grad_norm=float("nan")), 6, outputs={"loss": torch.tensor(1.0)})


# ---------------------------------------------------------------- wrappers: aux in training only


def test_classifier_adds_weighted_aux_in_training_and_never_at_eval():
    torch.manual_seed(0)
    model = ZooClassifier("dhvn_nano", arch_kwargs=VISION_KW, aux_weights=AUX).train()
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    losses = model(x, y, mode="loss")
    raw = model.net.aux_losses()
    assert set(raw) and {f"loss_{k}" for k in raw} <= set(losses)
    for k, v in raw.items():
        assert torch.allclose(losses[f"loss_{k}"], AUX[k] * v)
    model.eval()
    with torch.no_grad():
        preds = model(x, y, mode="predict")
        logits = model.net(x)
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(torch.stack([p["loss"] for p in preds]), ce, atol=1e-6)


def test_lm_eval_loss_excludes_load_balance():
    torch.manual_seed(0)
    model = ZooLM("exp11_dynamic_tiny", arch_kwargs=dict(vocab_size=256, max_seq_len=32), aux_weights=AUX)
    ids = torch.randint(0, 256, (2, 33))
    x, y = ids[:, :-1], ids[:, 1:]
    model.train()
    losses = model(x, y, mode="loss")
    assert "loss_load_balance" in losses and losses["loss_load_balance"] > 0
    model.eval()
    with torch.no_grad():
        preds = model(x, y, mode="predict")
        logits = model.net(x)
    nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
    assert sum(float(p["nll_sum"]) for p in preds) == pytest.approx(float(nll), rel=1e-5)
    metric = LMMetric()
    metric.process(None, preds)
    out = metric.compute_metrics(metric.results)
    assert out["loss"] == pytest.approx(float(nll) / y.numel(), rel=1e-5)


def test_aux_weights_default_to_the_objectives_and_take_overrides():
    """Every objective a family declares is weighted (its default unless the config overrides it),
    so no auxiliary loss is dropped silently; a config naming no objective is refused."""
    from zoo.layers.objectives import OBJECTIVES
    model = ZooClassifier("dhvn_nano", arch_kwargs=VISION_KW, aux_weights=dict(gate_entropy=0.5, ponder=0.2))
    assert model.aux_weights == dict(gate_entropy=0.5, load_balance=OBJECTIVES["load_balance"].weight,
                                     budget=OBJECTIVES["budget"].weight)   # ponder: not a DHVN objective
    out = model.train()(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), mode="loss")
    raw = model.net.aux_losses()
    torch.testing.assert_close(out["loss_gate_entropy"], 0.5 * raw["gate_entropy"])
    assert "loss_load_balance" not in out   # weight 0: not added
    with pytest.raises(HarnessError, match="names no routing objective: pondr"):
        ZooClassifier("dhvn_nano", arch_kwargs=VISION_KW, aux_weights=dict(pondr=0.01))


def test_the_ponder_ramp_comes_from_the_objective_and_ramps_to_the_configured_weight():
    model = ZooClassifier("eshvision_xs", arch_kwargs=VISION_KW, aux_weights=dict(ponder=0.04))
    hook = AuxWeightScheduleHook()
    seen = []
    for it in (0, 100, 150, 200, 300):
        hook.before_train_iter(_runner(model, it, 401), it)   # progress it / 400
        seen.append(round(model.aux_weights["ponder"], 6))
    assert seen == [0.0, 0.0, 0.02, 0.04, 0.04]   # 0 until a quarter, linear to 0.04 at the half


# ---------------------------------------------------------------- metrics


def test_classification_metric():
    m = ClassificationMetric()
    m.process(None, [dict(loss=torch.tensor(1.0), top1=torch.tensor(True), top5=torch.tensor(True)),
                     dict(loss=torch.tensor(3.0), top1=torch.tensor(False), top5=torch.tensor(True))])
    assert m.compute_metrics(m.results) == dict(top1=50.0, top5=100.0, loss=2.0)


@settings(max_examples=20)
@given(counts=st.lists(st.integers(0, 9), min_size=2, max_size=4).filter(lambda c: sum(c) > 0))
def test_routing_metric_shares_entropy_balance(counts):
    n = len(counts)
    items = []
    for c, k in enumerate(counts):  # k samples took choice c, each with uniform probabilities
        for _ in range(k):
            items.append({"routing": {"l0": dict(granularity="sample", choices=tuple(f"c{i}" for i in range(n)),
                                                 counts=F.one_hot(torch.tensor(c), n).float(),
                                                 prob_sums=torch.full((n,), 1.0 / n))}})
    m = RoutingMetric()
    m.process(None, items)
    flat = m.compute_metrics(m.results)
    s = m.summary["l0"]
    total = sum(counts)
    assert [s["share"][f"c{i}"] for i in range(n)] == pytest.approx([k / total for k in counts])
    assert s["entropy"] == pytest.approx(-sum(k / total * math.log(k / total) for k in counts if k))
    assert s["load_balance"] == pytest.approx(1.0)  # uniform probabilities: N * sum f_i / N
    assert flat["l0/entropy"] == s["entropy"]


# ---------------------------------------------------------------- checkpoints


def test_checkpoints_load_with_exactly_the_allowlist(trained_checkpoint):
    from harness.engine.checkpoint import load_checkpoint_file, safe_globals
    work, _ = trained_checkpoint
    path = str(work / "epoch_2.pth")
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    names = {f"{g.__module__}.{g.__qualname__}" for g in safe_globals()}
    assert needed <= names, needed - names
    assert "builtins.getattr" not in needed  # HistoryBuffers are stored as plain data
    ckpt = load_checkpoint_file(path)
    assert ckpt["message_hub"]["log_scalars"]  # histories survive, as plain dicts until the hook rebuilds them


def test_plain_mmengine_history_buffers_are_refused(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    from harness.engine.checkpoint import load_checkpoint_file
    buf = HistoryBuffer()
    buf.update(1.0)
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": {}, "message_hub": {"log_scalars": {"loss": buf}}}, path)
    with pytest.raises(HarnessError, match="refused: .* names mmengine.logging.history_buffer.HistoryBuffer"):
        load_checkpoint_file(str(path))


def test_a_checkpoint_from_before_the_decoder_rename_passes_the_check(tmp_path):
    """Harness checkpoints written while DHVN's decoder stage called its 1x1 conv `fuse` (now
    `merge`) load through check_checkpoint, weights and all."""
    from harness.engine.checkpoint import check_checkpoint
    model = ZooClassifier("dhvn_nano", arch_kwargs=VISION_KW)
    old = {k.replace(".merge.", ".fuse."): v.clone() + 1 for k, v in model.state_dict().items()}
    assert any(".fuse." in k for k in old)
    path = tmp_path / "iter_1.pth"
    torch.save(dict(state_dict=old, meta={}), path)
    fresh = ZooClassifier("dhvn_nano", arch_kwargs=VISION_KW)
    check_checkpoint(str(path), fresh, "dhvn_nano")
    key = next(k for k in fresh.state_dict() if ".merge." in k)
    torch.testing.assert_close(fresh.state_dict()[key], old[key.replace(".merge.", ".fuse.")])
