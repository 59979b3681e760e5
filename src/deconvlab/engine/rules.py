"""ReLU backward rules: the only thing in which deconvnet, guided backprop and the gradient differ.

With ``f`` the ReLU's forward input and ``R`` the signal coming down from above:

- gradient (backprop, Simonyan et al. 2013):       ``R_l = 1(f > 0) * R``
- deconvnet (Zeiler & Fergus 2014, sec. 2.1):       ``R_l = max(R, 0)``
- guided (Springenberg et al. 2015):                ``R_l = 1(f > 0) * max(R, 0)``

A rule is a tiny object with one ``backward``; both engines (``"mirror"`` and ``"autograd"``) call it at
every ReLU, so a new rule is one new class plus one entry in ``RULES``.

Other activations (``ACTIVATION_POLICIES``). Deconvnet and guided backpropagation are defined for ReLU
networks only (Zeiler & Fergus 2014; Springenberg et al. 2015, "Striving for Simplicity: The All
Convolutional Net", ICLR workshop, arXiv:1412.6806). Both engines extend them by one policy:

- ``"rectifier"``: a rectifier-like activation (ReLU6 = hardtanh(0, 6), LeakyReLU, PReLU, RReLU, ELU,
  CELU, SELU, GELU, SiLU, hardswish, Mish: zero or small for negative inputs, increasing for positive
  ones) takes the rule at its position, as if it were the ReLU it stands in for, with ``f`` its input
  (read before an in-place call overwrites it): deconvnet ``max(R, 0)``, guided ``1(f > 0) * max(R, 0)``.
  Its own slope (GELU's bump, ReLU6's ceiling) is ignored, as the deconvnet ignores the ReLU's.
- ``"gate"``: a sigmoid or hardsigmoid whose output multiplies another path (the gate of a
  squeeze-excitation block, Hu et al. 2018) is a constant recorded in the forward pass: the signal
  passes through the gated path scaled by the gate, and none of it enters the gate's branch, as the
  deconvnet passes none into a max-pool's switches.
- anything else (tanh, softplus, a sigmoid not used as a gate, ...) is refused by name, unless
  ``allow_vjp=True`` takes its plain gradient (``"gradient"``).

``strict=True`` keeps the original definition: every activation other than ReLU is refused by name (or
takes its plain gradient with ``allow_vjp=True``). Under the ``"gradient"`` rule, every activation
takes its plain gradient, which is exact. ``result.projection_info.activations`` lists which policy
applied where.

>>> import torch
>>> positive = torch.tensor([True, False, True, False])   # 1(f > 0)
>>> signal = torch.tensor([2.0, 3.0, -1.0, -4.0])          # R
>>> get_rule("gradient").backward(positive, signal)
tensor([ 2.,  0., -1., -0.])
>>> get_rule("deconvnet").backward(positive, signal)
tensor([2., 3., 0., 0.])
>>> get_rule("guided").backward(positive, signal)
tensor([2., 0., 0., 0.])
"""

from __future__ import annotations

from types import MappingProxyType

import torch


class Rule:
    """How the signal passes a ReLU on its way down.

    ``exact_elsewhere``: whether the plain gradient is the right thing for every other nonlinearity
    (true only for the gradient itself; deconvnet and guided are defined for ReLUs only).
    ``skip_normalisation``: whether local response / contrast normalisation passes the signal
    unchanged, as in the original deconvnet, which does not invert it (Zeiler & Fergus sec. 2.1;
    Mahendran & Vedaldi 2016 do the same).
    ``needs_forward``: whether ``backward`` reads ``positive``; if not, engines may pass None.
    """

    name: str = ""
    exact_elsewhere: bool = False
    skip_normalisation: bool = True
    needs_forward: bool = True

    def backward(self, positive: torch.Tensor | None, signal: torch.Tensor) -> torch.Tensor:
        """Signal below the ReLU, from ``positive = (f > 0)`` and the ``signal`` R above it."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Gradient(Rule):
    """Backpropagation: pass R where the forward input was positive (Simonyan et al. 2013)."""

    name = "gradient"
    exact_elsewhere = True
    skip_normalisation = False

    def backward(self, positive: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        return signal * positive


class Deconvnet(Rule):
    """Zeiler & Fergus: rectify the signal, ignore the forward pass: ``max(R, 0)``."""

    name = "deconvnet"
    needs_forward = False

    def backward(self, positive: torch.Tensor | None, signal: torch.Tensor) -> torch.Tensor:
        return signal.clamp(min=0)


class Guided(Rule):
    """Springenberg et al.: both masks, ``1(f > 0) * max(R, 0)`` (Mahendran & Vedaldi's DeSaliNet)."""

    name = "guided"

    def backward(self, positive: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        return signal.clamp(min=0) * positive


ACTIVATION_POLICIES = ("rectifier", "gate", "gradient")

RULES = MappingProxyType({rule.name: rule for rule in (Deconvnet(), Guided(), Gradient())})


def get_rule(rule: str | Rule) -> Rule:
    """The rule called ``rule`` in ``RULES``, or ``rule`` itself if it already is a ``Rule``.

    >>> get_rule("guided")
    Guided()
    """
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str) and rule in RULES:
        return RULES[rule]
    raise ValueError(f"rule={rule!r}: not a known rule; choose one of {sorted(RULES)} or pass a Rule object")
