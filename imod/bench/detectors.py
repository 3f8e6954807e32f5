"""Detectors by name, and one rule for turning any detector's output into outlier scores.

Built-in names are PyOD detectors with PyOD defaults (plus ``random_state`` where the class
accepts one, and ``verbose=0`` for the torch-based ones) and ``IMDetector`` from
``imod.detector``, imported lazily so this module works before that package exists. Any other
class can be named by import path ``package.module:Class``; it is built with no arguments, or
with ``random_state=seed`` when its constructor accepts that.

Score direction: PyOD detectors' ``decision_function`` is higher = more abnormal and is used
as is; scikit-learn-style outlier detectors (``score_samples`` higher = more normal) are
scored with ``-score_samples(X)``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "BUILTIN_DETECTORS",
    "DetectorNameError",
    "canonical_name",
    "imdetector_available",
    "make_detector",
    "outlier_scores",
]

# name -> (module, class); constructed by `make_detector` with the extra rules below.
BUILTIN_DETECTORS: dict[str, tuple[str, str]] = {
    "IMDetector": ("imod.detector", "IMDetector"),
    "IForest": ("pyod.models.iforest", "IForest"),
    "ECOD": ("pyod.models.ecod", "ECOD"),
    "COPOD": ("pyod.models.copod", "COPOD"),
    "KNN": ("pyod.models.knn", "KNN"),
    "LOF": ("pyod.models.lof", "LOF"),
    "PCA": ("pyod.models.pca", "PCA"),
    "HBOS": ("pyod.models.hbos", "HBOS"),
    "OCSVM": ("pyod.models.ocsvm", "OCSVM"),
    "CBLOF": ("pyod.models.cblof", "CBLOF"),
    "LODA": ("pyod.models.loda", "LODA"),
    "AutoEncoder": ("pyod.models.auto_encoder", "AutoEncoder"),
    "DeepSVDD": ("pyod.models.deep_svdd", "DeepSVDD"),
    "MCD": ("pyod.models.mcd", "MCD"),
    "GMM": ("pyod.models.gmm", "GMM"),
    "INNE": ("pyod.models.inne", "INNE"),
    "KDE": ("pyod.models.kde", "KDE"),
    "DIF": ("pyod.models.dif", "DIF"),
    # slow: ~40 s for one 700 x 20 fit on one CPU thread; left out of routine runs
    "LUNAR": ("pyod.models.lunar", "LUNAR"),
}


class DetectorNameError(ValueError):
    """Unknown detector name or import path that cannot be loaded.

    Examples
    --------
    >>> try:
    ...     canonical_name("no.such.module:Detector")
    ... except DetectorNameError as exc:
    ...     print(isinstance(exc, ValueError), str(exc).startswith("cannot import detector"))
    True True
    """


def canonical_name(name: str) -> str:
    """Map a detector name to its canonical spelling (case-insensitive for built-ins).

    Import paths (``pkg.mod:Class``) are returned unchanged after checking they import.

    Raises
    ------
    DetectorNameError
        Unknown name (the message lists the valid choices) or import failure.

    Examples
    --------
    >>> canonical_name("iforest")
    'IForest'
    >>> canonical_name("sklearn.ensemble:IsolationForest")
    'sklearn.ensemble:IsolationForest'
    >>> canonical_name("iforrest")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    imod.bench.detectors.DetectorNameError: unknown detector 'iforrest'. Did you mean: IForest? ...
    """
    if ":" in name:
        _import_class(name)
        return name
    for known in BUILTIN_DETECTORS:
        if known.casefold() == name.casefold():
            return known
    import difflib

    close = difflib.get_close_matches(name, list(BUILTIN_DETECTORS), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise DetectorNameError(
        f"unknown detector {name!r}.{hint} Choices: {', '.join(BUILTIN_DETECTORS)}, or a class "
        "by import path 'package.module:Class'"
    )


def _import_class(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise DetectorNameError(
            f"detector import path must look like 'pkg.mod:Class', got {spec!r}"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise DetectorNameError(f"cannot import detector {spec!r}: {exc}") from exc
    if not callable(obj):
        raise DetectorNameError(f"detector {spec!r} is not a class or factory")
    return obj


def imdetector_available() -> tuple[bool, str]:
    """Whether ``from imod.detector import IMDetector`` works, and the error if not.

    Examples
    --------
    >>> imdetector_available()
    (True, '')
    """
    try:
        _import_class("imod.detector:IMDetector")
    except DetectorNameError as exc:
        return False, str(exc)
    return True, ""


def _accepts(factory: Callable[..., Any], param: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return param in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def make_detector(name: str, seed: int, n_features: int, n_jobs: int | None = None) -> Any:
    """Build a fresh, unfitted detector.

    Parameters
    ----------
    name : str
        Canonical built-in name or import path (see `canonical_name`).
    seed : int
        Passed as ``random_state`` where the constructor accepts it.
    n_features : int
        Needed by PyOD's ``DeepSVDD``.
    n_jobs : int, optional
        Passed as ``n_jobs`` where accepted (only when given).

    Returns
    -------
    object
        An estimator with ``fit(X)``.

    Examples
    --------
    >>> det = make_detector("iforest", seed=0, n_features=3)
    >>> type(det).__name__, det.random_state
    ('IForest', 0)
    >>> det = make_detector("sklearn.ensemble:IsolationForest", seed=7, n_features=3, n_jobs=1)
    >>> type(det).__name__, det.random_state, det.n_jobs
    ('IsolationForest', 7, 1)
    """
    if ":" in name:
        factory = _import_class(name)
        kwargs: dict[str, Any] = {}
    else:
        module, cls = BUILTIN_DETECTORS[canonical_name(name)]
        factory = _import_class(f"{module}:{cls}")
        kwargs = {}
        if cls == "DeepSVDD":
            kwargs["n_features"] = n_features
        if cls in ("AutoEncoder", "DeepSVDD", "LUNAR"):
            kwargs["verbose"] = 0  # their default prints per-epoch progress
    if _accepts(factory, "random_state"):
        kwargs["random_state"] = seed
    if n_jobs is not None and _accepts(factory, "n_jobs"):
        kwargs["n_jobs"] = n_jobs
    return factory(**kwargs)


def _is_pyod(detector: Any) -> bool:
    try:
        from pyod.models.base import BaseDetector
    except ImportError:  # pragma: no cover - pyod is a dependency
        BaseDetector = ()  # noqa: N806
    return isinstance(detector, BaseDetector) or hasattr(detector, "decision_scores_")


def outlier_scores(detector: Any, X: np.ndarray) -> np.ndarray:
    """Scores where higher means more anomalous, whatever the detector's convention.

    PyOD detectors (a ``BaseDetector`` or anything with ``decision_scores_``) give
    ``decision_function(X)``; scikit-learn-style outlier detectors give ``-score_samples(X)``
    (or ``-decision_function(X)`` when they lack ``score_samples``).

    Raises
    ------
    TypeError
        If the detector has none of these methods.

    Examples
    --------
    Both conventions put the planted outlier (last row) on top:

    >>> import numpy as np
    >>> from pyod.models.pca import PCA
    >>> from sklearn.ensemble import IsolationForest
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(size=(50, 2)), [[8.0, 8.0]]])
    >>> pyod_det = PCA().fit(X)  # decision_function: higher = more abnormal
    >>> sk_det = IsolationForest(n_estimators=20, random_state=0).fit(X)  # the reverse
    >>> int(outlier_scores(pyod_det, X).argmax()), int(outlier_scores(sk_det, X).argmax())
    (50, 50)
    """
    if _is_pyod(detector):
        scores = detector.decision_function(X)
    elif hasattr(detector, "score_samples"):
        scores = -np.asarray(detector.score_samples(X), dtype=np.float64)
    elif hasattr(detector, "decision_function"):
        scores = -np.asarray(detector.decision_function(X), dtype=np.float64)
    else:
        raise TypeError(
            f"{type(detector).__name__} has neither decision_function nor score_samples"
        )
    return np.asarray(scores, dtype=np.float64).ravel()
