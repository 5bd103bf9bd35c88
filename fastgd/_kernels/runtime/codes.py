"""Integer codes shared by every kernel.

Kernels receive options as small integers rather than strings so that the
compiled loops never touch Python objects. The Cython module ``_sgd_fast``
declares the same numbers in an enum;
``tests/test_linear_kernels.py::test_cython_codes_match_python_codes`` checks
that the two agree.
"""

# Regression losses (``loss`` parameter of GDRegressor).
SQUARED_ERROR = 0
HUBER = 1
EPSILON_INSENSITIVE = 2
SQUARED_EPSILON_INSENSITIVE = 3

LOSS_CODES = {
    "squared_error": SQUARED_ERROR,
    "huber": HUBER,
    "epsilon_insensitive": EPSILON_INSENSITIVE,
    "squared_epsilon_insensitive": SQUARED_EPSILON_INSENSITIVE,
}

# Optimizers (``optimizer`` parameter of every estimator).
SGD = 0
MOMENTUM = 1
NESTEROV = 2
ADAGRAD = 3
RMSPROP = 4
ADAM = 5

OPTIMIZER_CODES = {
    "sgd": SGD,
    "momentum": MOMENTUM,
    "nesterov": NESTEROV,
    "adagrad": ADAGRAD,
    "rmsprop": RMSPROP,
    "adam": ADAM,
}

# Learning-rate schedules (``learning_rate`` parameter of GDRegressor).
CONSTANT = 0
OPTIMAL = 1
INVSCALING = 2
ADAPTIVE = 3

SCHEDULE_CODES = {
    "constant": CONSTANT,
    "optimal": OPTIMAL,
    "invscaling": INVSCALING,
    "adaptive": ADAPTIVE,
}

# Activations (layer ``activation`` parameter of the neural estimators).
IDENTITY = 0
RELU = 1
TANH = 2
SIGMOID = 3

ACTIVATION_CODES = {
    "identity": IDENTITY,
    "relu": RELU,
    "tanh": TANH,
    "sigmoid": SIGMOID,
}

# Slots of the ``counters`` array of the linear kernels: the scalars carried
# from one step to the next. The first six carry across epochs; SCALE (the
# lazy L2 scale of the per-sample kernels) and LOSS_SUM (Σ sᵢ·ℓᵢ so far)
# belong to one epoch.
INTERCEPT, AVG_INTERCEPT, T, L1_TOTAL, N_AVERAGED, N_UPDATES, SCALE, LOSS_SUM = range(8)
N_COUNTERS = 8
