# text: local text files (train*.txt, val*.txt under --data-root) or hub:NAME[:CONFIG] through
# `datasets`; byte-level tokens, so bits per byte is loss / ln 2.
_base_ = ['./pydocs.py']

suite = 'text'

train_dataloader = dict(dataset=dict(_delete_=True, type='TextFiles', root=None, split='train',
                                     max_seq_len={{_base_.max_seq_len}}))
test_dataloader = dict(dataset=dict(_delete_=True, type='TextFiles', root=None, split='test',
                                    max_seq_len={{_base_.max_seq_len}}))
