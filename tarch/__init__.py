"""tarch: task-aware architecture inference.

Pick a good architecture for a new task from its meta-features alone, by gradient ascent through a
value network trained on many (task, architecture, score) results.
"""

__version__ = "0.1.0"
