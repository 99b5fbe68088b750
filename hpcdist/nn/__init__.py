"""Small xp-generic (numpy/cupy) layers, losses, optimizers and lr schedules."""

from .conv import Conv2D, Flatten, MaxPool2D, Reshape, cnn, square_image
from .init import child_seeds, init_weight
from .layers import (
    ELU,
    Dense,
    Dropout,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Tanh,
    mlp,
)
from .losses import softmax_cross_entropy, softmax_cross_entropy_sums
from .optim import SGD, Adam, Momentum, Optimizer
from .schedules import (
    ConstantLR,
    CosineLR,
    LinearScalingLR,
    LinearWarmup,
    Schedule,
    StepLR,
    scaled_lr,
)

__all__ = [
    "ELU",
    "SGD",
    "Adam",
    "ConstantLR",
    "Conv2D",
    "CosineLR",
    "Dense",
    "Dropout",
    "Flatten",
    "LinearScalingLR",
    "LinearWarmup",
    "MaxPool2D",
    "Module",
    "Momentum",
    "Optimizer",
    "Parameter",
    "ReLU",
    "Reshape",
    "Schedule",
    "Sequential",
    "StepLR",
    "Tanh",
    "child_seeds",
    "cnn",
    "init_weight",
    "mlp",
    "scaled_lr",
    "softmax_cross_entropy",
    "softmax_cross_entropy_sums",
    "square_image",
]
