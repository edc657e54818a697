# pydocs: CPython's pydoc_data.topics reference text, byte tokens, 90/10 split by topic.
_base_ = ['./_base_/default_runtime.py', './_base_/schedule_adamw_cosine.py']

suite = 'pydocs'
task = 'causal-lm'
max_seq_len = 256

model = dict(
    type='ZooLM',
    arch=None,
    arch_kwargs=dict(vocab_size=256, max_seq_len=max_seq_len),
    aux_weights=dict(load_balance=0.5, ponder=0.01, alpha_variance=0.1, gate_entropy=0.01),
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)

train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
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

train_cfg = dict(max_epochs=2)
optim_wrapper = dict(optimizer=dict(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1))
