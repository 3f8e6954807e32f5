"""The figure of one explained row (docs/figures/explain_cardio.png).

The default detector is fitted on 70 % of the bundled cardio set (labels unused); on the
other 30 %, the left panel explains the true outlier (ADBench label 1) with the highest
score, the right panel the mean contribution over the flagged rows.

Usage: ``python benchmarks/conventions/explain_figure.py --out docs/figures/explain_cardio.png``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from imod import IMDetector  # noqa: E402
from imod.bench.catalogue import BUNDLED_DIR, load_npz  # noqa: E402
from imod.detector import plot_explanation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("explain_cardio.png"))
    args = ap.parse_args()
    data = load_npz(BUNDLED_DIR / "6_cardio.npz")
    X_train, X_test, _, y_test = train_test_split(data.X, data.y, test_size=0.3,
                                                  stratify=data.y, random_state=0)
    det = IMDetector(random_state=0, device="cpu").fit(X_train)
    ex = det.explain(X_test)
    outliers = np.flatnonzero(y_test == 1)
    row = int(outliers[np.argmax(ex.scores[outliers])])
    flagged = det.predict(X_test) == -1
    print(f"row {row} (label 1): score {ex.scores[row]:.3f} = reference "
          f"{ex.reference[row]:.3f} + {ex.contributions[row].sum():.3f}; view {ex.views[row]}")
    print("top features:", [(n, round(v, 3)) for n, v in ex.top_features(row, k=5)])
    print(f"{flagged.sum()} flagged test rows, {int(y_test[flagged].sum())} of them outliers")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_explanation(ex, rows=row, top=8, ax=axes[0])
    plot_explanation(ex, rows=flagged, top=8, ax=axes[1])
    fig.suptitle("cardio (ADBench), default IMDetector: why rows score as outliers", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
