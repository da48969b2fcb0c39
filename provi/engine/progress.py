"""A progress bar updated between compiled chunks (never once per step)."""

from __future__ import annotations

import numpy as np


class Progress:
    """tqdm bar showing steps, steps/s and the mean loss of the last chunk."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = None
        self.done = 0
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=True, mininterval=0.1)

    def update(self, done: int, losses: np.ndarray) -> None:
        if self.bar is None:
            return
        self.bar.update(done - self.done)
        self.done = done
        if len(losses):
            self.bar.set_postfix(loss=f"{float(np.mean(losses)):.4g}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
