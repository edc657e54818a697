# AdamW with a short linear warm-up, then cosine decay to the end of training.
# `end=None` means "the end of training": the CLI fills it from train_cfg after all overrides,
# so --epochs / --max-iters / --cfg-options never leave the schedule stale.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=None, T_max=None, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=5, val_interval=10**9)
test_cfg = dict(type='TestLoop')
