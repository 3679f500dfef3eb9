"""The backward pass: reverse-mode differentiation over the recorded graph.

`grad(outputs, inputs)` walks the graph from the outputs back to the inputs:

1. sort the nodes so that every node comes after all nodes that consumed its
   output (an iterative depth-first search: deep graphs must not hit Python's
   recursion limit);
2. keep only nodes from which an input can be reached;
3. visit them in that order, calling each node's `backward` on the gradient of
   its output (summed over every path that reached it, then dropped) and
   passing the results on to the node's inputs;
4. free each visited node unless the graph is retained.

Step 3 runs with recording switched on only when `create_graph=True`; then the
gradients are themselves differentiable tensors, which is all that Hessian-vector
products and MAML need.
"""
from . import anomaly
from .backend import get_array_module
from .grad_mode import no_grad, enable_grad, is_grad_enabled, set_grad_enabled  # noqa: F401 (re-exported)
from .ops.operands import as_tensor
from .tensor import Tensor

_FREED = ("trying to backward through a part of the graph that was already freed by an "
          "earlier backward; pass retain_graph=True to the first backward or grad call "
          "if you need to go through the graph more than once")


def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None,
         allow_unused=False):
    """Gradients of sum_i <grad_outputs[i], outputs[i]> with respect to each input.

    Returns a tuple of Tensors (a single Tensor when `inputs` is one tensor).
    `grad_outputs` may be omitted for scalar outputs (it is then 1).
    With `create_graph=True` the results are part of the graph and can be
    differentiated again. The graph is freed afterwards unless `retain_graph`
    (which defaults to `create_graph`). An input the outputs do not depend on
    is an error, or None with `allow_unused=True`.
    """
    single = isinstance(inputs, Tensor)
    inputs = (inputs,) if single else tuple(inputs)
    outputs, grad_outputs = _seed(outputs, grad_outputs, "grad")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"grad: inputs[{i}] is a {type(x).__name__}, expected a Tensor")
        if not x.requires_grad:
            raise ValueError(f"grad: inputs[{i}] (shape {x.shape}) does not require grad; "
                             "create it with requires_grad=True")
    if retain_graph is None:
        retain_graph = create_graph
    with set_grad_enabled(create_graph):
        found = _backward(outputs, grad_outputs, inputs, retain_graph)
    grads = []
    for i, x in enumerate(inputs):
        g = found.get(x._node if x._node is not None else id(x))
        if g is None and not allow_unused:
            raise ValueError(f"grad: inputs[{i}] (shape {x.shape}) was not used to compute the "
                             "outputs; pass allow_unused=True to get None for it")
        grads.append(g)
    return grads[0] if single else tuple(grads)


def backward(tensor, grad_output=None, retain_graph=False, create_graph=False):
    """Accumulate d(tensor)/d(leaf) into `.grad` of every leaf that requires grad."""
    outputs, grad_outputs = _seed(tensor, grad_output, "backward")
    with set_grad_enabled(create_graph):
        found = _backward(outputs, grad_outputs, None, retain_graph or create_graph)
        for leaf, g in found.values():
            leaf.grad = g if leaf.grad is None else leaf.grad + g


def _seed(outputs, grad_outputs, op):
    """Outputs and their incoming gradients as matching tuples of Tensors."""
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    elif isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (tuple, list)):
        grad_outputs = (grad_outputs,)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"{op}: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    seeds = []
    for i, (y, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(y, Tensor):
            raise TypeError(f"{op}: outputs[{i}] is a {type(y).__name__}, expected a Tensor")
        if not y.requires_grad:
            raise ValueError(f"{op}: outputs[{i}] does not require grad: nothing it was computed "
                             "from requires grad (or it was computed under no_grad())")
        if g is None:
            if y.data.size != 1:
                raise ValueError(f"{op}: outputs[{i}] has shape {y.shape}; gradients can be implied "
                                 "only for scalar outputs, pass grad_outputs of that shape")
            seeds.append(Tensor(get_array_module(y.data).ones(y.data.shape, y.data.dtype)))
            continue
        g = as_tensor(g, y.dtype)
        if g.shape != y.shape:
            raise ValueError(f"{op}: grad_outputs[{i}] has shape {g.shape} but outputs[{i}] has "
                             f"shape {y.shape}; they must match")
        seeds.append(g)
    return outputs, seeds


def _sorted_graph(roots, target_leaves, target_nodes):
    """The nodes reachable from `roots`, each before the nodes that made its inputs, and the
    set of those whose backward must run to reach a target (None, meaning all, for targets=None).

    A node must run if one of its inputs is a target, or is made by a target or by a node
    that must run. Both come out of one iterative depth-first search: a node is finished
    (post-order) only after every node behind its inputs.
    """
    pruning = target_leaves is not None
    needed = set()
    order, visited = [], set()
    stack = [(node, False) for node in roots]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            if pruning:
                for x in node.inputs:
                    producer = x._node
                    if (id(x) in target_leaves) if producer is None else (
                            producer in needed or producer in target_nodes):
                        needed.add(node)
                        break
            continue
        if node in visited:
            continue
        if node.inputs is None:
            raise RuntimeError(_FREED)
        visited.add(node)
        stack.append((node, True))
        for x in node.inputs:
            producer = x._node
            if producer is not None and producer not in visited:
                stack.append((producer, False))
    order.reverse()
    return order, (needed if pruning else None)


def _backward(outputs, grad_outputs, targets, retain_graph):
    """Run the backward pass from `outputs`.

    With `targets` a tuple of tensors, returns {node or id(leaf): gradient} for
    them; with `targets=None`, returns {id(leaf): (leaf, gradient)} for every
    leaf that requires grad.
    """
    node_grads, leaf_grads = {}, {}
    for y, g in zip(outputs, grad_outputs):
        if y._node is None:  # a leaf output is its own gradient's target
            _add_leaf(leaf_grads, y, g)
        else:
            previous = node_grads.get(y._node)
            node_grads[y._node] = g if previous is None else previous + g

    target_nodes = set() if targets is None else {t._node for t in targets if t._node is not None}
    target_leaves = None if targets is None else {id(t) for t in targets if t._node is None}
    order, needed = _sorted_graph(list(node_grads), target_leaves, target_nodes)
    found = {}
    for node in order:
        g = node_grads.pop(node, None)
        if g is None:
            continue
        if node in target_nodes:
            found[node] = g
        if needed is not None and node not in needed:
            continue
        if node.edit_stamp != Tensor.edits:
            _check_unedited(node)
        input_grads = anomaly.checked_backward(node, g) if anomaly._state.enabled else node.backward(g)
        for x, gx in zip(node.inputs, input_grads):
            if gx is None or not x.requires_grad:
                continue
            if gx.data.shape != x.data.shape:
                raise RuntimeError(f"{node.name()}.backward returned a gradient of shape {gx.shape} "
                                   f"for an input of shape {x.shape} (a bug in that op)")
            producer = x._node
            if producer is None:
                if target_leaves is None or id(x) in target_leaves:
                    _add_leaf(leaf_grads, x, gx)
            elif needed is None or producer in needed or producer in target_nodes:
                previous = node_grads.get(producer)
                node_grads[producer] = gx if previous is None else previous + gx
        if not retain_graph:
            node.release()
    if targets is None:
        return leaf_grads
    found.update((key, g) for key, (_, g) in leaf_grads.items())
    return found


def _add_leaf(leaf_grads, leaf, g):
    previous = leaf_grads.get(id(leaf))
    leaf_grads[id(leaf)] = (leaf, g if previous is None else previous[1] + g)


def _check_unedited(node):
    """Raise if an input of `node` was edited in place after the node was recorded."""
    for i, x in enumerate(node.inputs):
        if x._version > node.edit_stamp:
            raise RuntimeError(f"{node.name()}: input {i} (shape {x.shape}) was modified in place "
                               "after it was used; its backward would use the new values. "
                               "Update it only after the backward pass, or use a copy")
