"""Floor 2: projecting units of a PyTorch CNN back to pixels (Zeiler & Fergus 2014, sec. 2.1).

- ``project``: each unit's projection, by a ReLU ``rule`` ("deconvnet", "guided", "gradient") and an
  ``engine``: "autograd" (a backward pass whose ReLU backward is the rule, for any model: ``autograd``),
  "mirror" (the paper's explicit deconvnet over the model's graph, windowed and batched: ``mirror``),
  or "auto" (the default: the mirror wherever it can run). They agree.
- ``strongest_units``: each image's strongest activation per channel, the paper's choice of unit.
- ``receptive_field``: the input box each unit of a layer can see, computed from the model (any
  model: the torch functions of one forward pass are followed).
- ``rules``: the rules as small objects (``Rule``, ``RULES``, ``get_rule``); ``rule_relus``: the
  context in which every ReLU the code calls backpropagates by a rule.
- ``graph``: a forward pass read once as a graph of torch function calls (the mirror walks it).

Depends on torch and ``deconvlab.arithmetic`` only.
"""

from deconvlab.engine.autograd import rule_relus
from deconvlab.engine.project import ENGINES, ProjectionInfo, project, strongest_units
from deconvlab.engine.receptive import ReceptiveField, receptive_field, receptive_fields
from deconvlab.engine.rules import RULES, Deconvnet, Gradient, Guided, Rule, get_rule

__all__ = [
    "ENGINES",
    "RULES",
    "Deconvnet",
    "Gradient",
    "Guided",
    "ProjectionInfo",
    "ReceptiveField",
    "Rule",
    "get_rule",
    "project",
    "receptive_field",
    "receptive_fields",
    "rule_relus",
    "strongest_units",
]
