"""archspec: a declarative model compiler for PyTorch.

``archspec.check(path)`` validates a spec without importing torch; ``archspec.compile(path)``
builds it into an ``nn.Module`` (imports torch on first use).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import ArchspecError, Diagnostic, SpecError  # noqa: E402
from .pipeline import Checked, check_file, check_text, load_spec  # noqa: E402

check = check_file

__all__ = ["ArchspecError", "Checked", "Diagnostic", "SpecError", "check", "check_file", "check_text",
           "compile", "load_spec", "__version__"]


def compile(source, **kwargs):  # noqa: A001 - mirrors torch.compile's naming on purpose
    """Compile a spec (path, YAML text or checked spec) into an ``nn.Module``; see :mod:`archspec.build`."""
    from .build import compile_spec

    return compile_spec(source, **kwargs)
