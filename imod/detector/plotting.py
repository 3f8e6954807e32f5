"""Plots of a fitted :class:`IMDetector`: the loss trajectories recorded while it trained,
and the explanation of its scores."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["plot_explanation", "plot_loss_trajectories"]


def plot_loss_trajectories(detector, y=None, ax=None, quantiles: bool = True):
    """Draw the early-training loss curves of a fitted detector.

    Without labels: the mean member-averaged loss over the recorded training
    rows with a 25-75 % band (and 5-95 % when ``quantiles``). A detector with
    several preprocessing views draws each view with its own line style. With labels ``y``
    (1 = outlier, for the training rows, as passed to ``fit``): the mean
    trajectory of inliers and outliers separately, the picture of the
    inlier-memorization effect. Recordings used by the score are marked.

    Parameters
    ----------
    detector : IMDetector
        Fitted.
    y : array-like of shape (n_train,), optional
        Labels of the training data (only for plotting; fit never sees them).
    ax : matplotlib Axes, optional
    quantiles : bool, default=True
        Shade quantile bands.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from imod import IMDetector
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> det = IMDetector(n_members=3, max_updates=20, random_state=0).fit(X)
    >>> ax = plot_loss_trajectories(det, y=(np.arange(200) < 10).astype(int))
    >>> len(ax.lines) >= 2
    True
    """
    import matplotlib.pyplot as plt

    check_is_fitted(detector)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    views = detector.views_
    if y is not None:
        y = np.asarray(y).ravel()
        index = detector.train_index_
        # all rows are scored up to max_record_samples; beyond, a subset of unknown size
        every_row = len(index) < detector.max_record_samples
        if (y.shape[0] != len(index)) if every_row else (y.shape[0] <= index[-1]):
            raise ValueError(
                f"y has {y.shape[0]} labels but the detector was fitted on "
                + (f"{len(index)} rows" if every_row else f"more than {index[-1]} rows")
            )
    for i, view in enumerate(views):
        # one view: solid lines; several: one line style per view, named in the legend
        style = "-" if len(views) == 1 else ["-", "--", "-.", ":"][i % 4]
        prefix = "" if len(views) == 1 else f"{view.method}: "
        traj = view.loss_trajectory()
        x = traj["epoch"].to_numpy()
        if y is None:
            ax.plot(x, traj["mean"], color="C0", ls=style, label=f"{prefix}mean loss")
            if quantiles:
                ax.fill_between(x, traj["q25"], traj["q75"], color="C0", alpha=0.3,
                                label=f"{prefix}25-75 %")
                ax.fill_between(x, traj["q05"], traj["q95"], color="C0", alpha=0.12,
                                label=f"{prefix}5-95 %")
        else:
            per = view.train_trajectories  # (T, m) rows record_index
            labels = y[view.record_index]
            for value, name, color in ((0, "inliers", "C0"), (1, "outliers", "C3")):
                sel = labels == value
                if not sel.any():
                    continue
                curve = per[:, sel]
                ax.plot(x, curve.mean(axis=1), color=color, ls=style,
                        label=f"{prefix}{name} (n={int(sel.sum())})")
                if quantiles:
                    lo, hi = np.percentile(curve, [25, 75], axis=1)
                    ax.fill_between(x, lo, hi, color=color, alpha=0.2)
        for xv in x[view.used_recordings]:
            ax.axvline(xv, color="k", lw=0.6, ls=":")
    ax.set_xlabel("epoch")
    ax.set_ylabel("reconstruction loss (member mean)")
    ax.set_yscale("log")
    ax.set_title("early-training losses (dotted: recordings used by the score)")
    ax.legend(fontsize=8)
    return ax


def plot_explanation(explanation, rows=0, top: int = 10, ax=None):
    """Bar chart of the features that contribute most to outlier scores.

    Parameters
    ----------
    explanation : Explanation
        From :meth:`IMDetector.explain` (or ``IMDetectorPyOD.explain``).
    rows : int, or boolean mask or array of int, default=0
        One row (its contributions), or several rows, e.g. the flagged ones
        (``det.predict(X) == -1``): their mean contribution per feature.
    top : int, default=10
        Features shown: the largest contributions, positive ones first.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from imod import IMDetector
    >>> X = np.random.default_rng(0).normal(size=(300, 6))
    >>> det = IMDetector(n_members=3, random_state=0).fit(X)
    >>> ex = det.explain(np.r_[X[:5], [[0, 0, 0, 0, 30, 0]]])
    >>> ax = plot_explanation(ex, rows=5, top=3)
    >>> [t.get_text() for t in ax.get_yticklabels()][-1]
    'x4'
    """
    import matplotlib.pyplot as plt

    contributions = np.asarray(explanation.contributions)
    if np.ndim(rows) == 0:
        row = int(rows)
        values = contributions[row]
        title = (f"row {row}: outlier score {explanation.scores[row]:.3g} = reference "
                 f"{explanation.reference[row]:.3g} + contributions")
    else:
        index = np.asarray(rows)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(int)
        if index.size == 0:
            raise ValueError("rows selects no row: nothing to plot")
        values = contributions[index].mean(axis=0)
        title = f"mean contribution over {index.size} rows"
    order = np.argsort(-values, kind="stable")[:top][::-1]  # largest at the top
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.35 * len(order) + 1.2))
    colors = np.where(values[order] >= 0, "C3", "C0")
    ax.barh(np.arange(len(order)), values[order], color=colors)
    ax.set_yticks(np.arange(len(order)))
    ax.set_yticklabels([str(explanation.feature_names[j]) for j in order])
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlabel("contribution to the outlier score (red: more abnormal)")
    ax.set_title(title, fontsize=9)
    return ax
