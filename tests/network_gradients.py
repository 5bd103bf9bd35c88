"""A network's loss gradient by its backward pass and by central differences (tests only)."""

import numpy as np


def backward_gradients(net, loss, inputs, targets):
    """Gradient of ``loss`` w.r.t. every parameter of ``net``, by one backward pass.

    The gradient buffer is filled with NaN first, so a parameter whose
    gradient the pass forgets to write shows.
    """
    n = inputs[0].shape[0]
    ws = net.make_workspace(n, True, np.random.default_rng(0))
    loss.make_buffers(n, net.dtype)
    scores = net.forward(inputs, ws, n, True)
    dscores = ws.dscores[:n]
    loss(scores, targets, dscores, n)
    net.grads[:] = np.nan
    net.backward(dscores, ws, n)
    return net.grads.copy()


def finite_difference_gradients(net, loss, inputs, targets, indices, eps=1e-6):
    """Central differences of ``loss`` w.r.t. the parameters ``indices`` of ``net``."""
    n = inputs[0].shape[0]

    def objective():
        ws = net.make_workspace(n, False)
        loss.make_buffers(n, net.dtype)
        scores = net.forward(inputs, ws, n, False).copy()
        return loss(scores, targets, np.empty_like(scores), n)

    numeric = np.empty(len(indices))
    for k, j in enumerate(indices):
        saved = net.params[j]
        net.params[j] = saved + eps
        up = objective()
        net.params[j] = saved - eps
        down = objective()
        net.params[j] = saved
        numeric[k] = (up - down) / (2 * eps)
    return numeric


def central_difference(objective, array, index, eps=1e-6):
    """∂ objective() / ∂ array[index] by central differences (``array`` restored)."""
    saved = array[index]
    array[index] = saved + eps
    up = objective()
    array[index] = saved - eps
    down = objective()
    array[index] = saved
    return (up - down) / (2 * eps)
