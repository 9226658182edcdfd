"""torchvision's AlexNet rebuilt in plain torch.nn (torchvision itself is not installed), for the import tests.

The module tree mirrors torchvision/models/alexnet.py, so that its `state_dict()` has torchvision's keys:
features.0, .3, .6, .8, .10, classifier.1, .4, .6.
"""


def torchvision_alexnet(classes=1000, seed=0):
    """A seeded, randomly initialized (He-normal) torchvision-layout AlexNet in eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2))
    model.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    model.classifier = nn.Sequential(
        nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True), nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, classes))

    for module in [*model.features, *model.classifier]:  # He init: activations keep their scale, so that the
        if hasattr(module, "weight"):                     # softmax is far from uniform and comparisons mean something
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.normal_(module.bias, std=0.1)

    def forward(images):
        x = model.avgpool(model.features(images))
        return model.classifier(torch.flatten(x, 1))

    model.forward = forward
    return model.eval()


def torch_probabilities(model, images):
    """torch's softmax for uint8 NHWC images, preprocessed as torchvision's transforms do ([0, 1], ImageNet's
    mean and std)."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return torch.softmax(model((x - mean) / std), dim=1).numpy()
