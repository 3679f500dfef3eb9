"""Gradient-based meta-learning: one inner loop, three outer loops, one training loop."""
from .adapt import adapt
from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import Estimate, evaluate
from .learner import MetaLearner
from .maml import MAML
from .pretrain import Pretrain
from .reptile import Reptile
from .train import meta_train

__all__ = ["Estimate", "MAML", "MetaLearner", "Pretrain", "Reptile", "adapt", "evaluate", "load_checkpoint",
           "meta_train", "save_checkpoint"]
