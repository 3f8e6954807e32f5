"""How far rounding alone moves IMDetector's scores on Pima (the pin tests' bounds).

The fit is 100 Adam updates of float32 networks, so a change in the last bit of a
product (another CPU's kernels, another BLAS) can move the scores. This script measures
it without a second machine: it fits ``IMDetector(random_state=0)`` once as is and then
once per noise seed with the preprocessed rows multiplied by ``1 + 1e-7 * N(0, 1)``
(about one float32 ulp, applied where the rows enter the networks and where they are
scored), for today's default views and issue 16's, and prints, per run, how the scores
that ``tests/test_detector_pin.py`` pins (every 24th row) and the summary it pins moved.

    python benchmarks/studies/rounding_noise.py --seeds 20

The largest change over all runs, times 1.5, is what that test allows between
environments.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from imod import IMDetector
from imod.detector.preprocessing import IMPreprocessor

DATA = Path(__file__).resolve().parents[2] / "imod" / "data" / "29_Pima.npz"
VIEWS = {"default": {}, "issue16_views": {"preprocessing": ("standard", "robust", "whiten")}}
COLUMNS = ["max |d|", "median |d|", "pearson", "|d offset|", "|d mean|", "|d std|",
           "|d flagged|", "d AUROC"]


def fit_and_score(X: np.ndarray, views: dict, noise_seed: int | None) -> dict[str, object]:
    transform = IMPreprocessor.transform
    rng = np.random.default_rng(noise_seed)

    def noisy(self, Z):
        Zt = transform(self, Z)
        return Zt * (1 + 1e-7 * rng.standard_normal(Zt.shape))

    patch = nullcontext() if noise_seed is None else mock.patch.object(
        IMPreprocessor, "transform", noisy)
    with patch:
        det = IMDetector(random_state=0, device="cpu", contamination="auto", **views).fit(X)
        s = det.score_samples(X)
        return {"scores": s, "offset": det.offset_, "flagged": int((det.predict(X) == -1).sum())}


def changes(run: dict, ref: dict, y: np.ndarray) -> list[float]:
    a, b = run["scores"], ref["scores"]
    d = np.abs(a[::24] - b[::24])
    return [d.max(), np.median(d), np.corrcoef(a[::24], b[::24])[0, 1],
            abs(run["offset"] - ref["offset"]), abs(a.mean() - b.mean()),
            abs(a.std() - b.std()), abs(run["flagged"] - ref["flagged"]),
            roc_auc_score(y, -a) - roc_auc_score(y, -b)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="noise seeds (1..N)")
    args = parser.parse_args(argv)
    data = np.load(DATA, allow_pickle=False)
    X, y = data["X"].astype(np.float64), data["y"]
    rows = []
    with tqdm(total=len(VIEWS) * (args.seeds + 1), desc="fits") as bar:
        for name, views in VIEWS.items():
            ref = fit_and_score(X, views, None)
            bar.update()
            for seed in range(1, args.seeds + 1):
                rows.append((name, seed, changes(fit_and_score(X, views, seed), ref, y)))
                bar.update()
    print(f"{'views':14s} seed " + " ".join(f"{c:>11s}" for c in COLUMNS))
    for name, seed, r in rows:
        print(f"{name:14s} {seed:4d} " + " ".join(f"{v:11.4f}" for v in r))
    table = np.array([r for _, _, r in rows])
    worst = np.r_[table[:, :2].max(0), table[:, 2].min(), table[:, 3:7].max(0),
                  np.abs(table[:, 7]).max()]
    print(f"{'worst of ' + str(len(rows)):19s} " + " ".join(f"{v:11.4f}" for v in worst))


if __name__ == "__main__":
    main()
