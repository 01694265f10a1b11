"""Sample quality in the feature space of a classifier trained on the data set itself."""

from diffusion_lab.metrics.feature_net import FeatureNet, load_feature_net
from diffusion_lab.metrics.quality import (InceptionFID, QualityMetrics, class_accuracy, class_coverage,
                                           precision_recall)

__all__ = ["FeatureNet", "InceptionFID", "QualityMetrics", "class_accuracy", "class_coverage", "load_feature_net",
           "precision_recall"]
