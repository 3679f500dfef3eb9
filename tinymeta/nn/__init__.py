"""Neural nets on the engine: functional layers and losses, Modules holding named parameters."""
from . import functional, init
from .layers import BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Tanh
from .models import omniglot_cnn, sine_mlp
from .module import Module, Sequential

__all__ = ["BatchNorm1d", "BatchNorm2d", "Conv2d", "Flatten", "Linear", "MaxPool2d", "Module", "ReLU",
           "Sequential", "Tanh", "functional", "init", "omniglot_cnn", "sine_mlp"]
