"""The one interface every model offers the steps, networks and classical references alike.

``seqpipe.models`` holds the networks (torch only) and ``seqpipe.training`` the loop that
fits them; an ``Estimator`` wraps either a network or a statistical model behind the same
fit, forecast, sample, save, load and describe, and ``catalog`` builds and loads one by
its architecture's name.
"""

from seqpipe.estimators.catalog import architectures, build_estimator, default_params, load_estimator
from seqpipe.estimators.interface import Estimator, FitData, FitOptions, ForecastInputs

__all__ = ["Estimator", "FitData", "FitOptions", "ForecastInputs", "architectures", "build_estimator",
           "default_params", "load_estimator"]
