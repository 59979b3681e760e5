"""Floor 3 interface: the paper's study of a model as one static HTML report.

``build_report(model, out, model_name=..., data="builtin" | folder, checkpoints=..., options=...)`` runs
every section (``deconvlab.report.sections``) through a per-stage cache (``deconvlab.report.cache``),
then writes ``out/report.json`` (every number) and ``out/index.html`` (``deconvlab.report.html``), whose
figures are PNG files under ``out/figures`` referenced by relative paths.
"""

from deconvlab.report.build import build_report
from deconvlab.report.study import ReportOptions

__all__ = ["build_report", "ReportOptions"]
