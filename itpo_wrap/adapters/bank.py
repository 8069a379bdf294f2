"""Per-env functional copies of a policy's adaptable parameters, and per-env noise generators.

Copy ``i`` is env ``i``'s adapted policy; the copies are stacked on a leading dim so one
``PolicyAdapter.batched_forward`` call runs all envs. Env ``i``'s generator is seeded ``seed + i``, so
its noise banks are those of a single-env wrapper seeded ``seed + i`` (per-env equivalence).
"""

from __future__ import annotations

import numpy as np
import torch


class ParameterBank:
    """``params[k]``: ``(n, *shape_k)`` plain tensors (the functional step takes its own gradients), one row per env; ``generators[i]``: env ``i``'s.

    :param snapshot: the pretrained parameters every row starts from.
    :param n: number of envs.
    :param seed: env ``i``'s generator is seeded ``seed + i``.
    """

    def __init__(self, snapshot: list[torch.Tensor], n: int, seed: int) -> None:
        self.n = n
        self.params = [s.detach().unsqueeze(0).expand(n, *s.shape).clone() for s in snapshot]
        device = snapshot[0].device
        self.generators = [torch.Generator(device=device).manual_seed(seed + i) for i in range(n)]

    def reset_rows(self, rows: np.ndarray, snapshot: list[torch.Tensor]) -> None:
        """Rows ``rows`` back to ``snapshot`` (episode start, fallback, restore)."""
        with torch.no_grad():
            index = torch.as_tensor(rows, device=self.params[0].device)
            for p, s in zip(self.params, snapshot, strict=True):
                p[index] = s
