"""Gradient-based meta-learning: one inner loop, the outer loops built on it, one training loop."""
from .adapt import adapt
from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import Estimate, evaluate
from .imaml import IMAML
from .learner import MetaLearner
from .maml import MAML
from .metasgd import MetaSGD
from .pretrain import Pretrain
from .reptile import Reptile
from .task_threads import TaskThreads
from .train import meta_train

__all__ = ["Estimate", "IMAML", "MAML", "MetaLearner", "MetaSGD", "Pretrain", "Reptile", "TaskThreads", "adapt", "evaluate",
           "load_checkpoint", "meta_train", "save_checkpoint"]
