"""The memorization study in one command: detection, sampling-rate error, ablation table.

Runs ``imod memorize`` with the estimator's defaults (MLP 512 hidden units, Adam
lr 3e-3, batch 32, ``--epochs auto``: members fit their own rows, random labels
included) and ``--rate-study --ablation``; everything lands in ``--out``
(``summary.md`` collects the tables). Presets: 64 members at rate 0.7 and 192 at
rate 0.95 (>= 9 OUT members per example); 20 paired utility models; LOO study on
100 examples x 16 models each.

Anything after ``--`` is passed to ``imod memorize`` (overrides the preset), e.g.
``python benchmarks/studies/memorization_study.py --dataset mnist1d -- --members 4000
--block-size 1000 --device cuda``.
"""

from __future__ import annotations

import argparse
import sys

from imod.memorization.cli import main as memorize

_COMMON = ["--members", "64", "--ablation-members-095", "192", "--utility-members", "20",
           "--loo-examples", "100", "--loo-seeds", "16"]
PRESETS = {"digits": _COMMON, "mnist1d": _COMMON}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--out", default=None)
    p.add_argument("--threads", default="1")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    out = args.out or f"results/memorization-{args.dataset}"
    cmd = ["memorize", "--dataset", args.dataset, *PRESETS[args.dataset], "--out", out,
           "--threads", args.threads, "--device", args.device, "--rate-study", "--ablation",
           "--ablation-null-sides", "upper", "lower", "--no-progress", *extra]
    print("imod " + " ".join(cmd), flush=True)
    return memorize(cmd)


if __name__ == "__main__":
    sys.exit(main())
