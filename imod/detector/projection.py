"""The random projection IMDetector applies to wide inputs before its views.

The autoencoders' cost grows with their input width, and image or text embeddings have
512-768 columns. :class:`RandomProjection` centers the data and multiplies it by one
Gaussian matrix to ``n_components`` columns: distances between rows are kept up to a small
distortion (Johnson-Lindenstrauss), the directions of small variance included. The columns
are not standardized first: that would weigh a nearly constant column (a rare binary
feature, a quiet embedding dimension) like any other, and out of fold it lost to centering
alone (docs/accuracy_study.md, rounds 3-5).

The detector fits one projection and feeds its output to every view, so it is computed
once per fit and once per scoring call.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["RandomProjection", "random_projection"]

# Bound on |x / scale_| before centering: the products stay finite for any finite input
# (a new value 1e300 against a training maximum of 1e-300).
_SCALED_BOUND = 1e150


def random_projection(n_features: int, n_components: int, random_state) -> np.ndarray:
    """A Gaussian matrix ``(n_features, n_components)`` with entries of variance
    ``1 / n_components`` (squared row norms are kept on average).

    An int ``random_state`` seeds NumPy's default generator with it; otherwise an int
    is drawn from it (``sklearn.utils.check_random_state``).

    Examples
    --------
    >>> R = random_projection(768, 64, random_state=0)
    >>> R.shape, bool(np.isclose((R**2).sum(axis=1).mean(), 1.0, atol=0.05))
    ((768, 64), True)
    """
    seed = (int(random_state) if isinstance(random_state, Integral)
            else int(check_random_state(random_state).randint(2**31 - 1)))
    rng = np.random.default_rng(seed)
    return rng.normal(scale=1.0 / np.sqrt(n_components), size=(n_features, n_components))


class RandomProjection(TransformerMixin, BaseEstimator):
    """Center the columns and project the rows onto random Gaussian directions.

    Parameters
    ----------
    n_components : int, default=64
        Output columns.
    random_state : int, RandomState instance or None, default=None
        Draws the projection matrix (an int gives the same matrix every time).

    Attributes
    ----------
    scale_ : float
        The largest absolute training value (1 for all-zero data): rows are divided by
        it first, one factor for every column, so their geometry stays and products
        stay far from float64's limit.
    center_ : ndarray of shape (n_features_in_,)
        Mean of the rescaled training columns.
    components_ : ndarray of shape (n_features_in_, n_components)
        The projection matrix (:func:`random_projection`).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 300))
    >>> RandomProjection(16, random_state=0).fit_transform(X).shape
    (200, 16)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components: int = 64, *, random_state=None) -> None:
        self.n_components = n_components
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None) -> RandomProjection:
        """Learn the scale and center of ``X`` and draw the matrix (``y`` is ignored)."""
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite=True)
        scale = float(np.abs(X).max())
        self.scale_ = scale if scale > 0 else 1.0
        self.center_ = (X / self.scale_).mean(axis=0)
        self.components_ = random_projection(X.shape[1], self.n_components, self.random_state)
        return self

    def transform(self, X) -> np.ndarray:
        """Centered, rescaled rows of ``X`` times ``components_``."""
        check_is_fitted(self)
        return self.centered(X) @ self.components_

    def centered(self, X) -> np.ndarray:
        """The rescaled, centered rows that ``transform`` multiplies by ``components_``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[1.0, 4.0, 0.0], [3.0, 0.0, 0.0]])
        >>> RandomProjection(2, random_state=0).fit(X).centered(X).tolist()
        [[-0.25, 0.5, 0.0], [0.25, -0.5, 0.0]]
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite=True, reset=False)
        Z = np.clip(X / self.scale_, -_SCALED_BOUND, _SCALED_BOUND)
        Z -= self.center_
        return Z

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``rp0, rp1, ...``."""
        check_is_fitted(self)
        return np.asarray([f"rp{i}" for i in range(self.n_components)], dtype=object)

    def get_state(self) -> dict:
        """Fitted scale and center, JSON-friendly (the matrix is saved as a tensor)."""
        check_is_fitted(self)
        return {"scale_": float(self.scale_), "center_": self.center_.tolist(),
                "n_features_in_": int(self.n_features_in_)}

    @classmethod
    def from_state(cls, params: dict, state: dict, components: np.ndarray) -> RandomProjection:
        """Rebuild a fitted projection from :meth:`get_state` output and its matrix."""
        obj = cls(**params)
        obj.scale_ = float(state["scale_"])
        obj.center_ = np.asarray(state["center_"], dtype=np.float64)
        obj.components_ = np.asarray(components, dtype=np.float64)
        obj.n_features_in_ = int(state["n_features_in_"])
        if obj.components_.shape != (obj.n_features_in_, obj.n_components):
            raise ValueError(f"a projection matrix of shape {obj.components_.shape} does not "
                             f"fit {obj.n_features_in_} features and {obj.n_components} "
                             "components")
        return obj
