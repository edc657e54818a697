# cifar10: torchvision's CIFAR-10 under --data-root (downloaded there when online).
_base_ = ['./_base_/default_runtime.py', './_base_/schedule_adamw_cosine.py']

suite = 'cifar10'
mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

model = dict(
    type='ZooClassifier',
    arch='dhvn_tiny',  # the CLI sets each run's model (--models)
    # router: RouterSpec fields of a routed model (harness/engine/routing_mode.py); empty: each variant's own
    arch_kwargs=dict(num_classes=10, in_chans=3, img_size=32, mean=mean, std=std, router=dict()),
    aux_weights=dict(),  # overrides of the routing objectives' default weights (zoo.layers.objectives)
    label_smoothing=0.0,
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)

train_dataloader = dict(
    batch_size=128, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='Cifar', root=None, name=suite, split='train'),
)
test_dataloader = dict(
    batch_size=500, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='Cifar', root=None, name=suite, split='test'),
)
test_evaluator = [dict(type='ClassificationMetric'), dict(type='RoutingMetric'),
                  dict(type='ThroughputMetric', unit='samples')]

max_epochs = 50
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=0.05))
