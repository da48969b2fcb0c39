"""Errors provi raises: each names the site or option at fault and says what to do."""


class ProviError(Exception):
    """Base class of provi's own errors."""


class ModelError(ProviError, ValueError):
    """The model or its data cannot be fitted as given (bad data, unsupported site)."""


class EstimatorError(ProviError, ValueError):
    """A gradient estimator does not apply to a site's distribution."""


class ObjectiveError(ProviError, ValueError):
    """An objective returned something other than a finite scalar."""
