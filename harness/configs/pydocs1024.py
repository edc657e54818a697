# pydocs1024: the pydocs text at 1,024 tokens, the Exp11 seed's sequence length, in place of
# Shakespeare, which this environment cannot install (docs/DESIGN.md, "Embedded suites").
_base_ = ['./pydocs.py']

suite = 'pydocs1024'
max_seq_len = 1024

# pydocs's recipe at a quarter of the batch: a step reads as many tokens (2 x 1,024 = 8 x 256)
model = dict(arch_kwargs=dict(max_seq_len=max_seq_len))
train_dataloader = dict(batch_size=2, dataset=dict(max_seq_len=max_seq_len))
test_dataloader = dict(dataset=dict(max_seq_len=max_seq_len))
