# mqar256: multi-query associative recall (Zoology, Arora et al. 2024) at 256 tokens: 32 key-value
# pairs, then their queries at power-law gaps; vocabulary 512 (keys 1-255, values 256-511). Loss and
# accuracy count the query positions only. The generator and its definition: harness/suites/mqar.py.
_base_ = ['./pydocs.py']

suite = 'mqar256'
max_seq_len, num_kv_pairs, vocab_size = 256, 32, 512
mqar = dict(type='MQAR', max_seq_len=max_seq_len, num_kv_pairs=num_kv_pairs, vocab_size=vocab_size,
            power_a=0.01, seed=0)

# The recipe starts as pydocs's optimiser and schedule, over 20,000 training sequences (a fresh
# draw per sequence, like Zoology's 100,000); not yet tuned. 1,000 test sequences hold 32,000
# queries.
max_iters = 1000
model = dict(arch_kwargs=dict(vocab_size=vocab_size, max_seq_len=max_seq_len))
train_dataloader = dict(batch_size=16, dataset=dict(_delete_=True, split='train', num_examples=20000, **mqar))
test_dataloader = dict(batch_size=50, dataset=dict(_delete_=True, split='test', num_examples=1000, **mqar))
# LMMetric's loss is per query (its bits_per_byte is bits per query token); RecallMetric adds the
# query accuracy and, for a routed model, its routing precision (docs/DESIGN.md, "Embedded suites")
test_evaluator = [dict(type='LMMetric', bytes_per_token=1.0), dict(type='RecallMetric', choice='softmax'),
                  dict(type='RoutingMetric'), dict(type='ThroughputMetric', unit='tokens')]

train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters, T_max=max_iters, eta_min_ratio=0.01),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
