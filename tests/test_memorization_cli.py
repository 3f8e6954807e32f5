"""``imod memorize``: files written, studies, bad input."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest

from imod.memorization.cli import add_parser, main

# Tiny models: one torch thread avoids OpenMP spin-waits on a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


TINY = ["--dataset", "digits", "--members", "8", "--rate", "0.5", "--epochs", "2",
        "--hidden", "16", "--min-out", "1", "--block-size", "8", "--no-progress"]


def test_cli_writes_csv_markdown_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["memorize", *TINY, "--out", str(out), "--null-side", "lower"]) == 0
    for name in ["scores.csv", "summary.md", "summary.json", "high_influence_pairs.csv",
                 "leakage_pairs.csv", "score_distribution.png", "random_label_roc.png",
                 "members/manifest.json", "members/block_0000000_0000008.npz"]:
        assert (out / name).is_file(), name
    df = pd.read_csv(out / "scores.csv")
    assert {"p_in", "p_out", "difference", "fractional", "memorized", "random_label",
            "c_score", "lira"} <= set(df)
    md = (out / "summary.md").read_text()
    assert "AUROC" in md and "FPR@95%TPR" in md and "LiRA" in md
    assert "in-sample accuracy" in md and "random-label rows" in md
    # 2 epochs: the random labels are not fit, and the tool says so in its own words
    err = capsys.readouterr().err
    assert "not meaningful" in err and "--epochs" in err and "epochs=" not in err
    assert "NOT MEANINGFUL" in md
    assert (out / "score_distribution.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_rate_study_and_ablation(tmp_path):
    out = tmp_path / "studies"
    args = ["memorize", *TINY, "--out", str(out), "--rate-study", "--rates", "0.5", "0.9",
            "--loo-examples", "30", "--loo-seeds", "4", "--ablation", "--utility-members", "3",
            "--ablation-members-095", "40", "--block-size", "40", "--members", "40",
            "--null-side", "lower"]
    assert main(args) == 0
    rs = pd.read_csv(out / "rate_study.csv")
    assert list(rs.rate) == [0.5, 0.9] and rs.mae_difference.notna().all()
    ab = pd.read_csv(out / "ablation.csv")
    assert len(ab) == 6 and {"diff", "std", "pvalue", "delta", "p_vs_baseline"} <= set(ab)
    assert "Ablation" in (out / "summary.md").read_text()


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["memorize", *TINY, "--rate", "1.2", "--out", str(tmp_path)]) == 2
    assert "rate" in capsys.readouterr().err
    assert main(["memorize", *TINY, "--members", "2", "--rate", "0.9",
                 "--out", str(tmp_path)]) == 2
    assert "--members 2 is too few for --rate 0.9" in capsys.readouterr().err
    assert main(["memorize", *TINY, "--dataset", "nope", "--out", str(tmp_path)]) == 2


def test_add_parser_registers_the_subcommand():
    parser = argparse.ArgumentParser(prog="imod")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["memorize", "--members", "16", "--ablation"])
    assert args.members == 16 and args.ablation and callable(args.func)
    assert args.epochs == "auto" and parser.parse_args(["memorize", "--epochs", "7"]).epochs == 7
    with pytest.raises(SystemExit):
        parser.parse_args(["memorize", "--epochs", "lots"])
    try:
        from imod.cli import build_parser
    except ImportError:  # the main CLI is written separately
        return
    assert build_parser().parse_args(["memorize", "--rate", "0.95"]).rate == 0.95
