"""A Markdown table from a DataFrame (pandas' ``to_markdown`` needs ``tabulate``).

The scripts in this folder import it as ``from _table import markdown`` (Python puts a
script's own folder first on ``sys.path``).
"""

from __future__ import annotations

import pandas as pd


def markdown(df: pd.DataFrame, digits: int = 3, index: bool = False) -> str:
    """``df`` as a GitHub Markdown table, floats rounded to ``digits``."""
    if index:
        df = df.reset_index()
    def cell(v) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])
