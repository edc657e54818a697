# mqar1024: multi-query associative recall at 1,024 tokens, the Exp11 seed's sequence length: 128
# key-value pairs and their queries (the same 1 in 8 positions as mqar256), vocabulary 512.
_base_ = ['./mqar256.py']

suite = 'mqar1024'
max_seq_len, num_kv_pairs, vocab_size = 1024, 128, 512
mqar = dict(type='MQAR', max_seq_len=max_seq_len, num_kv_pairs=num_kv_pairs, vocab_size=vocab_size,
            power_a=0.01, seed=0)

# mqar256's recipe at a quarter of the batch, so a step reads as many tokens; 500 test sequences
# hold 64,000 queries.
model = dict(arch_kwargs=dict(vocab_size=vocab_size, max_seq_len=max_seq_len))
train_dataloader = dict(batch_size=4, dataset=dict(_delete_=True, split='train', num_examples=20000, **mqar))
test_dataloader = dict(batch_size=10, dataset=dict(_delete_=True, split='test', num_examples=500, **mqar))
