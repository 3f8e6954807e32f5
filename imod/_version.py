"""imod's version and a digest of its code: what results are tied to (below everything).

``__version__`` changes with each release; :func:`code_digest` changes with any edit of
imod's source, so saved results (``imod bench``'s ``run.json``, ``imod memorize``'s
``members/manifest.json``) can tell code states apart between releases too. Nothing here
imports another module of imod, torch or numpy.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__all__ = ["__version__", "code_digest"]

# 0.2.0: IMDetector's study-only parameters left the public API; resumes check code digests
__version__ = "0.2.0"

_PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (first 16 hex digits) of every ``.py`` file of the imod package, by path.

    Examples
    --------
    >>> len(code_digest()), code_digest() == code_digest()
    (16, True)
    """
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
