"""Tasks as plain data, and the distributions they are drawn from."""
from .sine import SineTasks
from .task import Examples, Task, stack_tasks

__all__ = ["Examples", "SineTasks", "Task", "stack_tasks"]
