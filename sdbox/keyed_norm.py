"""Keyed normalisation: a second set of normalisation state that only the keyed stream x̃ reads.

Why a second set: the weights of a box serve both streams, but one set of normalisation state
serves neither. One set of BatchNorm running statistics scored 55% / 58% (clean / keyed) where
each stream's own scored 71% / 66% (``benchmarks/batchnorm_streams.py``), and with one set of
affine parameters the keyed stream inherits the clean stream's disturbance through the shared
weights: in every such wrap the key holder's students lost 6–9 points to Normal KD (issue 18).

So during the wrap every normalisation layer (BatchNorm, LayerNorm, GroupNorm) carries a keyed
copy of its affine parameters and running statistics, trained on x̃ only. Afterwards the public
bundle keeps the clean set and the key file carries the keyed set: it is secret like κ, because a
fresh key read with the *public* statistics is useless, and the keyed affine parameters are part
of what opens the box. A state is a plain ``{"<module>.<tensor>": tensor}`` map, named as in the
model's ``state_dict``, so it is checked against any model by name and shape.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Mapping

import torch
import torch.nn as nn

from .errors import WrongKeyError

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
# num_batches_tracked is left out: it only matters while statistics are being estimated.
STATE_TENSORS = ("weight", "bias", "running_mean", "running_var")

NormState = Mapping[str, torch.Tensor]


def root(model: nn.Module) -> nn.Module:
    """The module a state's names are relative to: a box's classifier, else the model itself."""
    return model.model if getattr(model, "holds_classifier", False) else model


def norm_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The model's normalisation layers, by name."""
    return ((name, module) for name, module in model.named_modules() if isinstance(module, NORM_LAYERS))


def has_norm_layers(model: nn.Module) -> bool:
    return next(norm_layers(model), None) is not None


def _slots(model: nn.Module) -> Iterator[tuple[str, dict, str]]:
    """(state name, the module's parameter or buffer dict, attribute) for each tensor of the state."""
    for name, module in norm_layers(model):
        for attr in STATE_TENSORS:
            for store in (module._parameters, module._buffers):
                if store.get(attr) is not None:
                    yield f"{name}.{attr}" if name else attr, store, attr


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached float32 CPU copy of the model's current normalisation state."""
    return {name: store[attr].detach().to("cpu", torch.float32, copy=True) for name, store, attr in _slots(model)}


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(store[attr].shape) for name, store, attr in _slots(model)}


def check_state(state: NormState, model: nn.Module, what: str = "This key's keyed normalisation") -> None:
    """Refuse a state made for another architecture, naming the first difference."""
    expected = expected_shapes(model)
    got = {name: tuple(t.shape) for name, t in state.items()}
    if got == expected:
        return
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = sorted(n for n in set(got) & set(expected) if got[n] != expected[n])
    detail = (f"missing {missing[:3]}" if missing else f"unknown {extra[:3]}" if extra
              else f"{wrong[0]} has shape {got[wrong[0]]}, the model's {expected[wrong[0]]}")
    raise WrongKeyError(f"{what} was made for another architecture ({detail}): use the key file saved by the wrap of this box.")


@contextlib.contextmanager
def applied(model: nn.Module, state: NormState) -> Iterator[None]:
    """Inside the block, the model's normalisation layers read ``state`` instead of their own.

    The tensors are swapped in, not copied: parameters of a trainable state receive the
    gradients, a training-mode BatchNorm updates the given running statistics in place, and
    the model's own tensors are back untouched on exit, whatever happens inside. A state of
    another dtype or device is read as a converted copy (then it does not train). Not
    thread-safe: a block borrows the model, as ``model.train()`` would.
    """
    swapped: list[tuple[dict, str, torch.Tensor]] = []
    try:
        for name, store, attr in _slots(model):
            if name in state:
                original, tensor = store[attr], state[name]
                if tensor.dtype != original.dtype or tensor.device != original.device:
                    tensor = tensor.to(original.device, original.dtype)  # a half-precision or moved box reads a float32 CPU key
                swapped.append((store, attr, original))
                store[attr] = tensor
        yield
    finally:
        for store, attr, original in reversed(swapped):
            store[attr] = original


class TrainableNormState(nn.Module):
    """The keyed set during a wrap: parameters the optimiser trains and statistics BatchNorm updates.

    Starts as a copy of the model's own set (the keyed stream starts where the original is).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names: list[str] = []
        for name, store, attr in _slots(model):
            tensor = store[attr].detach().clone()
            slot = f"t{len(self.names)}"
            if isinstance(store[attr], nn.Parameter):
                self.register_parameter(slot, nn.Parameter(tensor, requires_grad=store[attr].requires_grad))
            else:
                self.register_buffer(slot, tensor)
            self.names.append(name)

    def state(self) -> dict[str, torch.Tensor]:
        """The live tensors by state name (what :func:`applied` swaps in)."""
        tensors = dict(self.named_parameters(recurse=False)) | dict(self.named_buffers(recurse=False))
        return {name: tensors[f"t{i}"] for i, name in enumerate(self.names)}

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A detached float32 CPU copy (what the key file carries)."""
        return {name: t.detach().to("cpu", torch.float32, copy=True) for name, t in self.state().items()}

    def load(self, state: NormState) -> None:
        with torch.no_grad():
            for name, tensor in self.state().items():
                tensor.copy_(state[name])


@torch.no_grad()
def estimate_statistics(model: nn.Module, inputs: Iterable[torch.Tensor], state: NormState | None = None) -> dict[str, torch.Tensor]:
    """BatchNorm running statistics re-estimated on ``inputs`` (cumulative average), the affine
    parameters kept: what anyone holding the weights can compute for a stream of their choice,
    e.g. an attacker for a fresh key. Starts from ``state`` (else the model's own); the model's
    own tensors are left as they were."""
    base = {k: v.clone() for k, v in (state or state_of(model)).items()}
    device = next(model.parameters()).device
    work = {k: v.to(device) for k, v in base.items()}
    batchnorms = [m for _, m in norm_layers(model) if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in batchnorms]
    counters = [m.num_batches_tracked.clone() for m in batchnorms]
    for name in work:
        if name.endswith("running_mean"):
            work[name].zero_()
        elif name.endswith("running_var"):
            work[name].fill_(1.0)
    was_training = model.training
    try:
        model.train()
        for m in batchnorms:
            m.momentum = None  # a cumulative average over every batch
            m.num_batches_tracked.zero_()
        with applied(model, work):
            for x in inputs:
                model(x.to(device))
    finally:
        model.train(was_training)
        for m, momentum, counter in zip(batchnorms, momenta, counters):
            m.momentum = momentum
            m.num_batches_tracked.copy_(counter)
    return {k: v.to("cpu", torch.float32) for k, v in work.items()}
