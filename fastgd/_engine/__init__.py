"""The engine: models, training loops and stopping rules built on the kernels.

The engine never imports an estimator; estimators call into it.
"""
