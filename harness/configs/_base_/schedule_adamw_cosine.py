# AdamW with a short linear warm-up, then cosine decay to the end of training. Every value is
# set, so `Runner.from_cfg` runs the config as it is; a suite that changes max_epochs restates
# the cosine's end. The CLI moves every end that matches the loop's length when --epochs,
# --max-iters or --cfg-options change it, so the schedule never goes stale (`end=None` in a
# config of one's own also means "the end of training" to the CLI).
max_epochs = 5
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10**9)
test_cfg = dict(type='TestLoop')
