# Issue 24 quality check: the suite's own recipe, unchanged, with the routers trained in sparse
# execution (RouterSpec.train_execution; docs/DESIGN.md, "Training execution and fixed capacity").
_base_ = ['../../../harness/configs/mnist5k.py']
model = dict(arch_kwargs=dict(router=dict(train_execution='sparse')))
