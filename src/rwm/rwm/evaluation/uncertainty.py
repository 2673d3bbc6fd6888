"""Is an ensemble's uncertainty worth anything? Its calibration on held-out trajectories: along the
same autoregressive rollouts as the error figures, the members' disagreement at each step against
the error the mean prediction actually makes there. A useful epistemic signal ranks the errors
(rank correlation well above 0) and its bins climb with them."""

from __future__ import annotations

import numpy as np
import torch

from rwm.evaluation.autoregressive_error import relative_error
from rwm.models.base import WorldModel, ensemble_gaussian


@torch.no_grad()
def uncertainty_calibration(
    model: WorldModel,
    states_n: torch.Tensor,
    actions_n: torch.Tensor,
    history: int,
    bins: int = 5,
    params_n: torch.Tensor | None = None,
) -> dict:
    """Rank and linear correlation of (spread, error) over every forecast step of every trajectory,
    and the mean error in each quantile bin of the spread (lowest spread first)."""
    model.eval()
    features, hidden = model.features(states_n[:, :history], actions_n[:, :history], None, params_n)
    means, stds, _ = model.member_heads(features[:, -1], states_n[:, history - 1])
    preds, spreads = [], []
    for t in range(history, states_n.shape[1]):
        mean, _ = ensemble_gaussian(means, stds)
        preds.append(mean)
        spreads.append(means.std(0, unbiased=False).mean(-1))
        if t + 1 < states_n.shape[1]:
            means, stds, _, hidden = model.step_members(mean, actions_n[:, t], hidden, params_n)
    error = relative_error(torch.stack(preds, 1), states_n[:, history:]).flatten().numpy()
    spread = torch.stack(spreads, 1).flatten().numpy()
    rank = lambda x: np.argsort(np.argsort(x)).astype(np.float64)  # noqa: E731
    edges = np.quantile(spread, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, spread, side="right") - 1, 0, bins - 1)
    return {
        "members": int(len(means)),
        "spearman": round(float(np.corrcoef(rank(spread), rank(error))[0, 1]), 4),
        "pearson": round(float(np.corrcoef(spread, error)[0, 1]), 4),
        "bins": [
            {
                "spread_from": round(float(edges[b]), 5),
                "spread_to": round(float(edges[b + 1]), 5),
                "mean_error": round(float(error[which == b].mean()), 5),
            }
            for b in range(bins)
        ],
    }
