"""The layer base: `Parameter`, `Module` and `ModuleList`, with PyTorch's naming rules.

A module owns parameters and sub-modules (attributes are registered when they
are assigned, as in PyTorch), runs `forward` and, from what that kept,
`backward`: it returns the gradient with respect to the input and adds the
parameter gradients to ``Parameter.grad``. `state_dict` keys are PyTorch's
(``layers.0.weight_ih_l0``), so ``{k: v.numpy() for k, v in
torch_model.state_dict().items()}`` loads into the matching fastnn model.
"""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, Mapping, Tuple

import numpy as np

__all__ = ["Parameter", "Module", "ModuleList"]


class Parameter:
    """A trainable array: ``data``, and ``grad`` (None until a backward adds to it)."""

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray):
        self.data = data
        self.grad = None

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def accumulate(self, grad: np.ndarray) -> None:
        """Add `grad` to ``self.grad`` (which becomes a new array the first time)."""
        if self.grad is None:
            self.grad = grad.copy() if grad.base is not None else grad
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of the layers: parameters, sub-modules, train/eval mode, state dicts."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call Module.__init__ "
                                 f"before assigning {name!r}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        """(name, parameter) pairs, this module's own first, then each sub-module's."""
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m.named_parameters(prefix + name + ".")

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def zero_grad(self) -> None:
        """Forget the accumulated gradients (``grad = None``, PyTorch's default)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        object.__setattr__(self, "training", bool(mode))
        for m in self._modules.values():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of the parameters under PyTorch's key names."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters (converted to each parameter's dtype).

        Raises KeyError for missing or unexpected keys (when `strict`) and
        ValueError for a shape that does not match; nothing is loaded then.
        """
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys "
                           f"{unexpected}")
        loaded = {}
        for name, value in state_dict.items():
            if name not in own:
                continue
            arr = np.asarray(value)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: {name} has dtype {arr.dtype}")
            if arr.shape != own[name].shape:
                raise ValueError(f"load_state_dict: {name} has shape {arr.shape}, the "
                                 f"parameter has {own[name].shape}")
            loaded[name] = np.array(arr, dtype=own[name].dtype, order="C")
        for name, arr in loaded.items():
            own[name].data = arr

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ModuleList(Module):
    """Sub-modules in a list, named "0", "1", ... (PyTorch's ``nn.ModuleList``)."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> "ModuleList":
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds modules, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))
