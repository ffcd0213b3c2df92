"""dsa110_pipeline: the stage framework of the DSA-110 continuum-imaging pipeline.

Importing the package has no side effects (no config is read, no logging set up).
"""

__version__ = "0.1.0"

from .context import PipelineContext, ProductRef, ProvenanceRecord  # noqa: E402
from .stage import FunctionStage, PipelineStage, Resources, StageConfig, stage  # noqa: E402

__all__ = ["__version__", "PipelineContext", "ProductRef", "ProvenanceRecord", "PipelineStage",
           "StageConfig", "Resources", "FunctionStage", "stage"]
