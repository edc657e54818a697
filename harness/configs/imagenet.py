# imagenet: ILSVRC-2012 at --data-root, as an ImageFolder tree (train/, val/ with class folders)
# or a local HF datasets directory. timm-standard transforms (RandAugment in training),
# ImageNet mean/std, 1000 classes from the folders.
_base_ = ['./imagefolder.py']

suite = 'imagenet'

train_dataloader = dict(batch_size=128, dataset=dict(suite=suite, auto_augment='rand-m9-mstd0.5-inc1'))
test_dataloader = dict(batch_size=256, dataset=dict(suite=suite))

train_cfg = dict(max_epochs=100)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
