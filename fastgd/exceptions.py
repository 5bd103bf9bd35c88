"""Exceptions raised by fastgd."""


class DivergenceError(ValueError, FloatingPointError):
    """Raised when a fit diverges: the loss or the parameters became NaN or inf.

    It derives from :class:`ValueError` (what scikit-learn raises for the same
    fault) and :class:`FloatingPointError`, so either can be caught.
    """
