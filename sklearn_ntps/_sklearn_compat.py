"""Every private scikit-learn name this package uses, imported in one place.

scikit-learn may move or rename its private helpers between releases (as
imbalanced-learn's ``_sklearn_compat`` notes); when it does, this module is
the one place to adapt, and the rest of the package imports from here.
"""

from sklearn.base import _fit_context
from sklearn.externals.array_api_compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_numpy_array,
)
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_params,
)
from sklearn.utils._set_output import _wrap_data_with_container
from sklearn.utils.validation import _check_sample_weight

__all__ = [
    "HasMethods",
    "Interval",
    "LinearClassifierMixin",
    "RealNotInt",
    "StrOptions",
    "_check_sample_weight",
    "_fit_context",
    "_wrap_data_with_container",
    "array_namespace",
    "device",
    "is_array_api_obj",
    "is_numpy_array",
    "validate_params",
]
