# cifar100: torchvision's CIFAR-100 under --data-root (downloaded there when online).
_base_ = ['./cifar10.py']

suite = 'cifar100'
mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

model = dict(arch_kwargs=dict(num_classes=100, mean=mean, std=std))
train_dataloader = dict(dataset=dict(name=suite))
test_dataloader = dict(dataset=dict(name=suite))
