"""The routing controls (execution, force, budget) under nesting and across threads: each acts on
the thread that entered it, contexts exiting in any order restore the defaults, and one model
serves concurrent requests, each under its own controls."""
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import zoo
from zoo import routing
from zoo.layers.router import Router


def _model():
    torch.manual_seed(0)
    model = zoo.create_model("dhvn_nano", num_classes=10, in_chans=1, img_size=16).eval()
    for r in routing.routers(model):  # a trained-like gate: items differ, so a budget moves some
        torch.nn.init.normal_(r.net[-1].weight, std=0.5)
    return model


def _inputs():
    return torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def test_overlapping_contexts_exited_out_of_order_restore_the_defaults():
    model = _model()
    rs = routing.routers(model)
    first, second = routing.execution(model, "sparse"), routing.execution(model, "dense")
    first.__enter__()
    second.__enter__()
    assert all(r.is_sparse() is False for r in rs)  # the later context wins while both are open
    first.__exit__(None, None, None)
    assert all(r.execution == "dense" for r in rs)  # the still-open one keeps its setting
    second.__exit__(None, None, None)
    # before: the first exit restored None, the second its saved "sparse", for good
    assert all(r.execution is None for r in rs)
    model.train()
    assert not any(r.is_sparse() for r in rs)


def test_nested_contexts_restore_each_level():
    model = _model()
    r = routing.routers(model)[0]
    with routing.force(model, r.choices[0]):
        with routing.force(model, r.choices[-1]):
            assert r.forced == len(r.choices) - 1
        assert r.forced == 0
    assert r.forced is None


def test_a_context_in_one_thread_leaves_another_threads_output_alone():
    model, x = _model(), _inputs()
    with torch.no_grad():
        plain = model(x)
    r = routing.routers(model)[0]
    entered, done = threading.Event(), threading.Event()

    def other():
        with routing.force(model, r.choices[-1]), routing.execution(model, "dense"):
            entered.set()
            done.wait(30)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert entered.wait(30)
        with torch.no_grad():
            seen = model(x)
        assert r.forced is None and r.execution is None
        torch.testing.assert_close(seen, plain, rtol=0, atol=0)
    finally:
        done.set()
        t.join()


def test_concurrent_requests_each_get_their_own_forced_choice_and_budget():
    """A serving loop: 4 threads share one model, each request under its own control; every
    output equals the same request served alone."""
    model, x = _model(), _inputs()
    choices = routing.routers(model)[0].choices
    calib = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    fit = routing.fit_budget(model, 0.5, calib)

    def controls(kind):
        if kind == "budget":
            return routing.flops_budget(model, fit)
        if kind == "plain":
            return contextlib.nullcontext()
        return routing.force(model, kind)

    kinds = ["plain", "budget", *choices]
    with torch.no_grad():
        alone = {}
        for k in kinds:
            with controls(k):
                alone[k] = model(x)
    barrier = threading.Barrier(4)

    def serve(i):
        barrier.wait(30)
        outs = []
        for step in range(12):
            k = kinds[(i + step) % len(kinds)]
            with controls(k), torch.no_grad():
                outs.append((k, model(x)))
        return outs

    with ThreadPoolExecutor(4) as pool:
        served = [o for outs in pool.map(serve, range(4)) for o in outs]
    for k, out in served:
        torch.testing.assert_close(out, alone[k], rtol=0, atol=0, msg=f"request under {k}")
    assert all(r.forced is None and r.execution is None and r.cost_shift == 0.0 for r in routing.routers(model))


def test_budget_in_one_thread_does_not_move_another_threads_routing():
    model, x = _model(), _inputs()
    calib = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = model(x)
    entered, done = threading.Event(), threading.Event()

    def other():
        with routing.flops_budget(model, 0.3, calib) as fit:
            assert fit.shift != 0
            entered.set()
            done.wait(60)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert entered.wait(120)
        assert all(r.cost_shift == 0.0 for r in routing.routers(model))
        with torch.no_grad():
            torch.testing.assert_close(model(x), plain, rtol=0, atol=0)
    finally:
        done.set()
        t.join()


def test_assignment_still_sets_every_threads_default_and_copies_keep_it():
    import copy
    import pickle
    r = Router(4, ("a", "b"), "sample")
    r.forced = 1
    seen = []
    t = threading.Thread(target=lambda: seen.append(r.forced))
    t.start()
    t.join()
    assert seen == [1]
    assert copy.deepcopy(r).forced == 1 and pickle.loads(pickle.dumps(r)).forced == 1
    with routing.force(torch.nn.Sequential(r), "a"):
        assert r.forced == 0
        assert copy.deepcopy(r).forced == 1  # a copy carries the default, not this thread's override
    assert r.forced == 1


def test_a_context_exited_in_another_thread_is_refused():
    model = _model()
    ctx = routing.execution(model, "dense")
    errors = []

    def exit_elsewhere():
        try:
            ctx.__exit__(None, None, None)
        except RuntimeError as e:
            errors.append(str(e))

    # entered in a thread of its own, so the override it leaves behind dies with that thread
    for step in (ctx.__enter__, exit_elsewhere):
        t = threading.Thread(target=step)
        t.start()
        t.join()
    assert errors and "thread that entered it" in errors[0]
    assert all(r.execution is None for r in routing.routers(model))


def test_setting_refuses_what_is_not_a_control():
    from zoo.layers import router_controls
    with pytest.raises(ValueError, match="not a routing control"):
        with router_controls.setting([Router(4, ("a", "b"), "sample")], "tau", [1.0]):
            pass
