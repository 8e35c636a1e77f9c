"""Eval mode for a block of code, with every submodule's own train/eval flag given back afterwards.

``model.train(was_training)`` would set one flag on every submodule; a model whose parts were put in
different modes (a frozen BatchNorm kept in eval inside a training model, a head left training under
an eval model) comes back as it was only when each submodule's flag is restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode; afterwards every submodule has its own flag again.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        >>> _ = m[1].eval()  # a frozen BatchNorm inside a training model
        >>> with eval_mode(m):
        ...     m[0].training
        False
        >>> m[0].training, m[1].training
        (True, False)
    """
    modes = [(m, m.training) for m in model.modules()]
    if any(training for _, training in modes):
        model.eval()  # a frozen backbone is in eval already: no walk over its modules to set them again
    try:
        yield
    finally:
        for m, training in modes:
            if m.training != training:  # nn.Module's setattr is slow: only the flags the block changed
                m.training = training
