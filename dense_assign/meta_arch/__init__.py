from .one_stage import NonFinitePredictionError, OneStageDetector, point_prior_generator
from .scoring import SCORE_FUNCTIONS, compute_scores

__all__ = [
    "NonFinitePredictionError",
    "OneStageDetector",
    "point_prior_generator",
    "SCORE_FUNCTIONS",
    "compute_scores",
]
