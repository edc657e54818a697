# imagefolder: any ImageFolder tree (or local HF datasets dir) at --data-root; the number of
# classes comes from the folders. timm transforms; ImageNet mean/std unless overridden.
_base_ = ['./_base_/default_runtime.py', './_base_/schedule_adamw_cosine.py']

suite = 'imagefolder'
img_size = 224
mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

model = dict(
    type='ZooClassifier',
    arch='dhvn_tiny',  # the CLI sets each run's model (--models)
    # num_classes=None: taken from the class folders before the model is built
    # router: RouterSpec fields of a routed model (harness/engine/routing_mode.py); empty: each variant's own
    arch_kwargs=dict(num_classes=None, in_chans=3, img_size=img_size, mean=mean, std=std, router=dict()),
    aux_weights=dict(),  # overrides of the routing objectives' default weights (zoo.layers.objectives)
    label_smoothing=0.1,
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)

_data = dict(type='ImageFolderSuite', root=None, img_size=img_size, in_chans=3, mean=mean, std=std,
             suite=suite)
train_dataloader = dict(
    batch_size=64, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(_data, split='train'),
)
test_dataloader = dict(
    batch_size=128, num_workers=4, persistent_workers=True, pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(_data, split='val'),
)
test_evaluator = [dict(type='ClassificationMetric'), dict(type='RoutingMetric'),
                  dict(type='ThroughputMetric', unit='samples')]

max_epochs = 30
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05))
