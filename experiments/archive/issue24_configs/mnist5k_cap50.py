# Issue 24 quality check: the suite's own recipe, unchanged, with fixed-capacity routing at
# k = 0.5 (RouterSpec.capacity; docs/DESIGN.md, "Training execution and fixed capacity").
_base_ = ['../../../harness/configs/mnist5k.py']
model = dict(arch_kwargs=dict(router=dict(train_execution='sparse', capacity=0.5)))
