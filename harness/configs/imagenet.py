# imagenet: ILSVRC-2012 at --data-root, as an ImageFolder tree (train/, val/ with class folders)
# or a local HF datasets directory, trained with DeiT's recipe (Touvron et al. 2021, timm's
# train.py flags in brackets), built from timm's and mmengine's own parts:
#   300 epochs, 5 of linear warm-up [--epochs 300 --warmup-epochs 5], cosine to 1e-5;
#   AdamW, weight decay 0.05, lr 5e-4 per 512 images, scaled to the global batch by mmengine's
#   auto_scale_lr [--lr-base 5e-4 --lr-base-size 512]; no gradient clipping;
#   RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25 [--reprob 0.25], timm transforms;
#   mixup 0.8 and cutmix 1.0 with label smoothing 0.1 in the soft targets [--mixup .8
#   --cutmix 1.0 --smoothing 0.1] (MixupPreprocessor, timm.data.Mixup, SoftTargetCrossEntropy);
#   model EMA, decay 0.99996 per step [--model-ema --model-ema-decay 0.99996] (ZooEMAHook, an
#   mmengine EMAHook); the test reports the raw weights and the average (ema_top1, ...);
#   channels-last [--channels-last]; bf16 autocast on GPU with --amp.
# Stochastic depth (DeiT's drop_path 0.1) is model-specific: --model-kwargs drop_path_rate=0.1.
_base_ = ['./imagefolder.py']

suite = 'imagenet'
max_epochs = 300
warmup_epochs = 5

model = dict(
    arch='dhvn_small',  # the CLI sets each run's model (--models)
    arch_kwargs=dict(num_classes=1000),
    label_smoothing=0.1,  # for hard labels; mixed batches carry their own smoothing
    channels_last=True,
    data_preprocessor=dict(_delete_=True, type='MixupPreprocessor', mixup_alpha=0.8, cutmix_alpha=1.0,
                           prob=1.0, switch_prob=0.5, mode='batch', label_smoothing=0.1,
                           channels_last=True),
)

# 128 per GPU; mixup pairs each image with another of its batch, so batches stay full and even
train_dataloader = dict(batch_size=128, drop_last=True,
                        dataset=dict(suite=suite, auto_augment='rand-m9-mstd0.5-inc1', re_prob=0.25))
test_dataloader = dict(batch_size=256, dataset=dict(suite=suite))

train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=5e-4, weight_decay=0.05), clip_grad=None)
auto_scale_lr = dict(enable=True, base_batch_size=512)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs, end=max_epochs,
         T_max=max_epochs - warmup_epochs, eta_min=1e-5, convert_to_iter_based=True),
]
# momentum is mmengine's: 1 - decay
default_hooks = dict(ema=dict(type='ZooEMAHook', ema_type='ExponentialMovingAverage', momentum=4e-5,
                              priority='NORMAL'))
