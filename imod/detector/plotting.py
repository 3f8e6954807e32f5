"""Plot the loss trajectories recorded while an :class:`IMDetector` trained."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["plot_loss_trajectories"]


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
