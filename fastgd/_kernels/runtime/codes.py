"""Integer codes shared by every kernel, and the slots of the kernels' small arrays.

Kernels receive options as small integers rather than strings so that the
compiled loops never touch Python objects. This module is the one definition:
the build (``setup.py``) writes these values into the Cython kernels' template
(``linear/_sgd_fast.pyx.tp``), so the Numba and Cython twins cannot disagree.
It must therefore stay plain Python without imports.
"""

# Regression losses (``loss`` of GDRegressor, and of GDClassifier); y is real.
SQUARED_ERROR = 0
HUBER = 1
EPSILON_INSENSITIVE = 2
SQUARED_EPSILON_INSENSITIVE = 3
# Classification losses (``loss`` of GDClassifier); y is -1 or +1.
HINGE = 4
LOG_LOSS = 5
MODIFIED_HUBER = 6
SQUARED_HINGE = 7
PERCEPTRON = 8

REGRESSION_LOSS_CODES = {
    "squared_error": SQUARED_ERROR,
    "huber": HUBER,
    "epsilon_insensitive": EPSILON_INSENSITIVE,
    "squared_epsilon_insensitive": SQUARED_EPSILON_INSENSITIVE,
}
CLASSIFICATION_LOSS_CODES = {
    "hinge": HINGE,
    "log_loss": LOG_LOSS,
    "modified_huber": MODIFIED_HUBER,
    "squared_hinge": SQUARED_HINGE,
    "perceptron": PERCEPTRON,
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

# Learning-rate schedules (``learning_rate`` of the linear estimators). The
# passive-aggressive steps PA1 and PA2 (Crammer et al., 2006) take their size
# from the sample's loss and squared norm, with eta0 as the aggressiveness C.
CONSTANT = 0
OPTIMAL = 1
INVSCALING = 2
ADAPTIVE = 3
PA1 = 4
PA2 = 5

SCHEDULE_CODES = {
    "constant": CONSTANT,
    "optimal": OPTIMAL,
    "invscaling": INVSCALING,
    "adaptive": ADAPTIVE,
    "pa1": PA1,
    "pa2": PA2,
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
# from one step to the next, in float64. The first six carry across epochs:
# the intercept and averaged intercept (the per-sample kernels keep them here
# during an epoch), t (1-based index of the next step, scikit-learn's t_),
# the cumulative L1 total u, the number of averaged steps and of optimizer
# steps (Adam's bias correction). SCALE (the lazy L2 scale of the per-sample
# kernels) and LOSS_SUM (Σ sᵢ·ℓᵢ so far) belong to one epoch.
INTERCEPT = 0
AVG_INTERCEPT = 1
T = 2
L1_TOTAL = 3
N_AVERAGED = 4
N_UPDATES = 5
SCALE = 6
LOSS_SUM = 7
N_COUNTERS = 8

# Slots of the int64 ``flags`` array of a per-sample epoch shared by two
# threads, each on a cache line of its own: blocks a thread has taken to load
# and run, blocks whose steps have begun, blocks whose steps are done.
BLOCKS_CLAIMED = 0
BLOCKS_STARTED = 8
BLOCKS_DONE = 16
N_BLOCK_FLAGS = 24
