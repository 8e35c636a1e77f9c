"""``History``: the per-epoch metrics of a training run, for both model families.

During :func:`engine.training.fit` every entry is read from the metrics the run logged through Lightning
(``trainer.callback_metrics``), the same values its CSV log holds; :meth:`History.from_csv` reads such a
log back.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["METRICS", "History"]

#: The metrics a run logs once per epoch, in History's field order.
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "epoch_time")


@dataclass
class History:
    """Per-epoch metrics of a training run, one entry per finished epoch (restored epochs included).

    ``val_loss`` / ``val_acc`` stay empty without a validation loader; ``epoch_time`` is the wall time
    of each epoch in seconds (training and validation).

    Example:
        >>> h = History(train_loss=[0.9, 0.5], train_acc=[0.6, 0.8], val_loss=[0.7, 0.8], val_acc=[0.7, 0.6])
        >>> len(h), h.best_epoch, h.to_dict()["train_acc"]
        (2, 0, [0.6, 0.8])
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.train_loss)

    @property
    def best_epoch(self) -> int | None:
        """0-based index of the epoch with the lowest ``val_loss`` (``train_loss`` without validation);
        a NaN or infinite loss never counts as the lowest (as Lightning's ``ModelCheckpoint`` ranks it).

        Example:
            >>> History(train_loss=[0.9, 0.5, 0.4], val_loss=[float("nan"), 0.5, 0.3]).best_epoch
            2
        """
        losses = self.val_loss or self.train_loss
        if not losses:
            return None
        return min(range(len(losses)), key=lambda i: (losses[i] if math.isfinite(losses[i]) else math.inf, i))

    def append(self, metrics: Mapping[str, Any]) -> None:
        """Add one epoch from logged metrics (``train_loss`` required; the others when present).

        Example:
            >>> h = History()
            >>> h.append({"train_loss": 0.5, "train_acc": 0.75, "epoch_time": 1.0})
            >>> h.train_acc, h.val_acc
            ([0.75], [])
        """
        if "train_loss" not in metrics:
            raise ValueError(f"an epoch of History needs 'train_loss'; got keys {sorted(metrics)}")
        for name in METRICS:
            if name in metrics:
                getattr(self, name).append(float(metrics[name]))

    def to_dict(self) -> dict[str, list[float]]:
        """A plain dict of lists (JSON-ready)."""
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> History:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        return cls(**{k: [float(x) for x in v] for k, v in d.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> History:
        """Read a ``metrics.csv`` written by Lightning's ``CSVLogger`` during :func:`engine.training.fit`.

        Rows are grouped by ``epoch``; empty cells (a metric logged at another moment) are skipped. A
        metric missing from some epochs (validation run every few epochs) is NaN there, so that index
        ``i`` of every list is the same epoch. The epochs are counted from 0 in the file (the log of a
        resumed run holds only its new epochs).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is empty, has no ``epoch`` column, or a cell that is not a number (the
                message names the file, the line and the column).

        Example:
            >>> import tempfile
            >>> p = os.path.join(tempfile.mkdtemp(), "metrics.csv")
            >>> rows = "epoch,step,train_loss,train_acc,val_loss\\n0,3,0.5,0.8,\\n0,3,,,0.6\\n"
            >>> _ = open(p, "w").write(rows)
            >>> History.from_csv(p).to_dict()["val_loss"]
            [0.6]
        """
        where = str(path)
        expected = (
            "expected a Lightning CSVLogger metrics.csv: a header line 'epoch,step,train_loss,train_acc,"
            "val_loss,val_acc,...' then one line per logging step; give the metrics.csv of a fit's log "
            "folder (e.g. logs/version_0/metrics.csv)"
        )
        rows: dict[int, dict[str, float]] = {}
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                raise ValueError(f"{where!r} is empty; {expected}")
            if "epoch" not in reader.fieldnames:
                shown = ",".join(reader.fieldnames)[:80]
                raise ValueError(f"{where!r} has no 'epoch' column (its header is {shown!r}); {expected}")
            for row in reader:
                if not row.get("epoch"):
                    continue
                line = reader.line_num
                number = _cell(row, "epoch", where, line)
                if not number.is_integer() or number < 0:
                    raise ValueError(
                        f"{where!r} line {line}, column 'epoch': {row['epoch']!r} is not an epoch number "
                        "(0, 1, 2, ...); fix or delete that line"
                    )
                values = rows.setdefault(int(number), {})
                for name in METRICS:
                    if row.get(name) not in (None, ""):
                        values[name] = _cell(row, name, where, line)
        history = cls()
        kept = [rows[e] for e in sorted(rows) if not math.isnan(rows[e].get("train_loss", math.nan))]
        # a metric logged in some epochs only is NaN in the others, so every list stays aligned by epoch
        present = [name for name in METRICS if any(name in values for values in kept)]
        for values in kept:
            history.append({**dict.fromkeys(present, math.nan), **values})
        return history


def _cell(row: dict[str, str], column: str, path: str, line: int) -> float:
    """The number in ``row[column]``, or an error naming the file, the line and the column."""
    text = row[column]
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"{path!r} line {line}, column {column!r}: {text!r} is not a number; a metrics.csv written by "
            "Lightning's CSVLogger holds only numbers (or empty cells); fix or delete that line"
        ) from None
