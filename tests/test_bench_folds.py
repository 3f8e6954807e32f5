"""The fixed fold partition of the development sets (benchmarks/studies/folds.json, issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

from imod.bench.catalogue import catalogue

FOLDS = Path(__file__).resolve().parents[1] / "benchmarks" / "studies" / "folds.json"


def test_folds_partition_the_48_development_sets_with_both_kinds_in_each():
    folds = json.loads(FOLDS.read_text())["folds"]
    assert len(folds) == 5
    classical = [n for f in folds for n in f["classical"]]
    embedding = [n for f in folds for n in f["embedding"]]
    assert len(classical) == len(set(classical)) == 30
    assert len(embedding) == len(set(embedding)) == 18
    for fold in folds:
        assert len(fold["classical"]) == 6 and len(fold["embedding"]) in (3, 4)
    # Every name is an ADBench file of the right folder.
    known = {f"{ref.folder}/{ref.stem}" for ref in catalogue()}
    assert {f"Classical/{n}" for n in classical} <= known
    assert set(embedding) <= known
    assert {n.split("/")[0] for n in embedding} == {"CV_by_ResNet18", "NLP_by_BERT"}
