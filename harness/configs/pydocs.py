# pydocs: CPython's pydoc_data.topics reference text, byte tokens, 90/10 split by topic.
_base_ = ['./_base_/default_runtime.py', './_base_/schedule_adamw_cosine.py']

suite = 'pydocs'
max_seq_len = 256

# The recipe, the same for every model: 300 steps x 8 windows of 256 bytes (1.5 passes over the
# 419 KB training text), AdamW (0.9, 0.95), weight decay 0.1, lr 3e-3 with a 20-step warm-up and
# cosine to 1 %. exp11_baseline_tiny at 300 steps, seed 0: 1.963 bits/byte at lr 1e-3, 1.802 at
# 3e-3, 1.831 at 6e-3 (experiments/quick_train.py).
max_iters = 300

model = dict(
    type='ZooLM',
    arch='exp11_dynamic_tiny',  # the CLI sets each run's model (--models)
    # router: RouterSpec fields of a routed model, e.g. how it trains (train_execution='sparse',
    # capacity=0.5; harness/engine/routing_mode.py); empty: each variant's own
    arch_kwargs=dict(vocab_size=256, max_seq_len=max_seq_len, router=dict()),
    # overrides of the routing objectives' default weights (zoo.layers.objectives; each weighted
    # term is logged as loss_<name>): none on this suite
    aux_weights=dict(),
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)

train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='PyDocs', split='train', max_seq_len=max_seq_len),
)
test_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='PyDocs', split='test', max_seq_len=max_seq_len),
)
test_evaluator = [dict(type='LMMetric', bytes_per_token=1.0), dict(type='RoutingMetric'),
                  dict(type='ThroughputMetric', unit='tokens')]

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10**9)
optim_wrapper = dict(optimizer=dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters, T_max=max_iters, eta_min_ratio=0.01),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters),
                     logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)
