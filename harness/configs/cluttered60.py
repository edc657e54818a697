# cluttered60: each mnist5k digit at a random place on a 60x60 canvas among 4 fragments of other
# digits (Mnih et al. 2014); 8,000 training canvases (2 per digit), 1,000 test canvases of the
# held-out digits. The generator and its protocol: harness/suites/cluttered.py.
_base_ = ['./mnist5k.py']

suite = 'cluttered60'
img_size, fragments = 60, 4

# The recipe starts as mnist5k's (400 iterations x 64 canvases, 3.2 passes over the 8,000
# canvases, AdamW lr 1e-2, cosine); not yet tuned on clutter.
model = dict(arch_kwargs=dict(img_size=img_size))
train_dataloader = dict(dataset=dict(_delete_=True, type='ClutteredMnist', split='train', img_size=img_size,
                                     fragments=fragments, placements=2, seed=0))
test_dataloader = dict(dataset=dict(_delete_=True, type='ClutteredMnist', split='test', img_size=img_size,
                                    fragments=fragments, placements=1, seed=0))
