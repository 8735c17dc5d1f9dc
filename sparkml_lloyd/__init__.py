"""sparkml_lloyd: Lloyd's k-means as a first-class ``pyspark.ml`` Estimator.

>>> from sparkml_lloyd import LloydKMeans, LloydKMeansModel
"""

from sparkml_lloyd._blockstore import Cleaned, clean
from sparkml_lloyd.choosing_k import Knee, SweepResult, SweepRow, knee, sweep
from sparkml_lloyd.clustering import (
    IterationRecord,
    LloydKMeans,
    LloydKMeansModel,
    LloydKMeansSummary,
)

__version__ = "0.1.0"
__all__ = [
    "Cleaned", "IterationRecord", "Knee", "LloydKMeans", "LloydKMeansModel",
    "LloydKMeansSummary", "SweepResult", "SweepRow", "__version__", "clean", "knee", "sweep",
]
