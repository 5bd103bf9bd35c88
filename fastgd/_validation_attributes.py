"""Held-out data of a fit: the ``eval_set`` argument and the attributes it leaves.

``validation_scores_`` (the held-out score per epoch), ``validation_loss_curve_``
(the held-out loss per epoch) and ``best_score_`` (the best score) exist
after a fit that scored held-out data (an ``eval_set``, or the split of
``early_stopping``), and not after one that did not, so a refit without
held-out data leaves no stale curves.
"""

__all__ = ["publish_validation", "unpack_eval_set", "VALIDATION_ATTRIBUTES"]

VALIDATION_ATTRIBUTES = ("validation_scores_", "validation_loss_curve_", "best_score_")


def publish_validation(estimator, history, validated):
    """Set (or remove) the held-out attributes of ``estimator`` from a training history.

    Parameters
    ----------
    estimator : estimator
    history : fastgd._engine.training.TrainingHistory
    validated : bool
        Whether the fit scored held-out data.
    """
    if not validated:
        for name in VALIDATION_ATTRIBUTES:
            estimator.__dict__.pop(name, None)
        return
    estimator.validation_scores_ = list(history.validation_scores)
    estimator.validation_loss_curve_ = list(history.validation_losses)
    estimator.best_score_ = max(estimator.validation_scores_) if history.validation_scores else None


def unpack_eval_set(eval_set):
    """``(X_val, y_val)`` of the ``eval_set`` argument of ``fit``.

    Raises
    ------
    ValueError
        If ``eval_set`` is not a pair.
    """
    try:
        X_val, y_val = eval_set
    except (TypeError, ValueError):
        raise ValueError(
            "eval_set must be a pair (X_val, y_val) of held-out samples and targets."
        ) from None
    return X_val, y_val
