"""One model graph: a forward pass read once, as the torch functions it calls on the image's tensors.

A ``torch.overrides.TorchFunctionMode`` watches one forward pass up to a layer. Every call of a torch
function that reads a tensor computed from the input image (a *value*) becomes a ``Node``: the
function, its arguments with those tensors replaced by ``Value(index)``, the values it reads and makes,
and the module being called (innermost). Modules or functions, it is all one: ``nn.Conv2d`` is seen as
the ``conv2d`` it calls, ``nn.ReLU(inplace=True)`` and ``F.relu`` as ``relu``, a residual ``out +=
identity`` as ``add_``, a DenseNet block as ``cat``. Weights, buffers and constants stay in the
arguments as they are. An in-place call makes a new value of the same tensor, so ``relu_(x)`` reads
one value and makes another. Nodes come in call order: a topological order.

Why a function mode and not ``torch.fx`` or ``torch.export``: measured on the compatibility table's 130
models (``benchmarks/readers.py``, docs/readers.md), this reader and ``torch.export`` read all 130, and
``torch.fx.symbolic_trace`` 127 (three timm models branch on traced values). But fx traces without data,
so it cannot follow control flow that depends on values, and it patches ``nn.Module`` for every thread
while it traces; export takes about 7x as long (median 1.4 s a model against 0.2 s, this reader's
forward pass included), functionalises in-place calls and decomposes modules into ATen ops (2.5x as many
nodes), so the mirror's steps and the switches and masks they record in the same pass would have to be
rebuilt on a second representation. This reader reads what the forward pass actually runs for this input
(data-dependent control flow, module reuse, in-place calls as they happen), in the functions and modules
the model's author wrote. Receptive fields, the mirror engine and incremental occlusion all read it.

>>> from torch import nn
>>> import torch.nn.functional as F
>>> class Block(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.conv = nn.Conv2d(2, 2, 3, padding=1)
...     def forward(self, x):
...         return F.relu(self.conv(x) + x)
>>> graph = capture(Block(), torch.zeros(1, 2, 4, 4), "")
>>> [(node.function, node.inputs, node.outputs, node.module) for node in graph.nodes]
[('conv2d', (0,), (1,), 'conv'), ('add', (1, 0), (2,), ''), ('relu', (2,), (3,), '')]
>>> graph.output, graph.shapes[graph.output]
(3, (1, 2, 4, 4))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from deconvlab.engine._model import forward_to, module_names, this_thread_only


@dataclass(frozen=True)
class Value:
    """A tensor computed from the image, in a node's arguments: ``graph.shapes[index]`` is its shape."""

    index: int


@dataclass
class Node:
    """One call of a torch function that reads values. ``data``: what the ``record`` callback kept."""

    function: str
    func: Callable
    args: tuple
    kwargs: dict
    inputs: tuple[int, ...]
    outputs: tuple[int, ...] = ()
    module: str = ""
    data: object = None


@dataclass
class Graph:
    """The nodes of one forward pass up to a layer; value 0 is the image, ``output`` the layer's output."""

    nodes: list[Node] = field(default_factory=list)
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    modules: dict[str, nn.Module] = field(default_factory=dict)
    output: int | None = None
    tensor: torch.Tensor | None = None  # the layer's output
    module_outputs: dict[str, int | None] = field(default_factory=dict)  # each module's first output's
    # value (None: a tensor not computed from the image), in the order the modules return

    def module_type(self, node: Node) -> str:
        """The type name of the module whose forward made the call (the model's own for '')."""
        return type(self.modules.get(node.module)).__name__


# record(node, args, kwargs, run) -> (output, data): run() makes the call; data is kept as node.data
Record = Callable[[Node, tuple, dict, Callable[[], object]], tuple[object, object]]


def capture(model: nn.Module, inputs: torch.Tensor, layer: str, record: Record | None = None) -> Graph:
    """Run ``model(inputs)`` up to the first call of module ``layer`` and return its graph.

    ``record`` sees each node before and after its call (an in-place call overwrites its input), and
    what it returns is kept as ``node.data``. The model must already be in the mode it should run in.
    """
    graph = Graph(modules=dict(model.named_modules()))
    reader = _Reader(graph, inputs, record)
    output = forward_to(
        model, layer, inputs, module_names(model, reader.stack), _module_outputs(model, reader), reader
    )
    graph.output, graph.tensor = reader.values.get(output), output
    if layer:
        graph.module_outputs.setdefault(layer, graph.output)
    return graph


@contextmanager
def _module_outputs(model: nn.Module, reader: _Reader) -> Iterator[None]:
    """Keep in ``graph.module_outputs`` the value of each module's first output that is a tensor."""

    def hook(name: str):
        def seen(_module, _args, output):
            first = output[0] if isinstance(output, tuple | list) and output else output
            if _is_tensor(first):
                reader.graph.module_outputs.setdefault(name, reader.values.get(first))

        return this_thread_only(seen)

    handles = [module.register_forward_hook(hook(name)) for name, module in model.named_modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def fill(args, values):
    """``args`` with each ``Value`` replaced by ``values[value.index]`` (a list or a dict), to call a
    node's function again: ``node.func(*fill(node.args, values), **fill(node.kwargs, values))``.

    >>> fill((Value(1), [Value(0), 2], {"alpha": Value(1)}), ["a", "b"])
    ('b', ['a', 2], {'alpha': 'b'})
    """
    if isinstance(args, Value):
        return values[args.index]
    if isinstance(args, dict):
        return {key: fill(item, values) for key, item in args.items()}
    if isinstance(args, tuple | list):
        items = [fill(item, values) for item in args]
        return items if isinstance(args, list) else tuple(items)
    return args


class _Reader(TorchFunctionMode):
    """Records each call that reads a value as a ``Node`` of ``graph``."""

    def __init__(self, graph: Graph, image: torch.Tensor, record: Record | None) -> None:
        super().__init__()
        self.graph, self.record, self.stack = graph, record, []
        self.values = WeakIdKeyDictionary()  # tensor -> its current value (weakly: nothing kept alive)
        self._make(image)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        read: list[int] = []
        node_args, node_kwargs = self._refer(args, read), {k: self._refer(v, read) for k, v in kwargs.items()}
        if not read:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", None) or repr(func)
        node = Node(
            name, func, node_args, node_kwargs, tuple(read), module=self.stack[-1] if self.stack else ""
        )
        if self.record is None:
            result = func(*args, **kwargs)
        else:
            result, node.data = self.record(node, args, kwargs, lambda: func(*args, **kwargs))
        made = [t for t in (result if isinstance(result, tuple | list) else (result,)) if _is_tensor(t)]
        if made:
            node.outputs = tuple(self._make(t) for t in made)
            self.graph.nodes.append(node)
        return result

    def _refer(self, value, read: list[int]):
        """``value`` with every tensor that is a value replaced by ``Value``; ``read`` collects them."""
        if _is_tensor(value) and value in self.values:
            read.append(self.values[value])
            return Value(self.values[value])
        if isinstance(value, tuple | list):
            before = len(read)
            items = [self._refer(item, read) for item in value]
            if len(read) > before:
                return items if isinstance(value, list) else tuple(items)
        return value

    def _make(self, tensor: torch.Tensor) -> int:
        index = len(self.graph.shapes)
        self.graph.shapes.append(tuple(tensor.shape))
        self.values[tensor] = index
        return index


def _is_tensor(value) -> bool:
    return isinstance(value, torch.Tensor)


def reachable(graph: Graph, through: Callable[[Node], tuple[int, ...]] | None = None) -> list[Node]:
    """The nodes the layer's output depends on, last first; ``through(node)``: the inputs to follow
    from a node (default all of them)."""
    wanted, found = {graph.output}, []
    for node in reversed(graph.nodes):
        if wanted.intersection(node.outputs):
            found.append(node)
            wanted.update(through(node) if through is not None else node.inputs)
    return found
