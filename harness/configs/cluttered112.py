# cluttered112: each mnist5k digit at a random place on a 112x112 canvas among 16 fragments of
# other digits (after Mnih et al. 2014's 100x100 with 8; the choice of 112 and 16 is argued in
# harness/suites/cluttered.py); 8,000 training canvases (2 per digit), 1,000 test canvases.
_base_ = ['./cluttered60.py']

suite = 'cluttered112'
img_size, fragments = 112, 16

# The recipe is cluttered60's; a canvas costs about 3.5x one of 60x60, so the test batch is smaller.
model = dict(arch_kwargs=dict(img_size=img_size))
train_dataloader = dict(dataset=dict(img_size=img_size, fragments=fragments))
test_dataloader = dict(batch_size=100, dataset=dict(img_size=img_size, fragments=fragments))
