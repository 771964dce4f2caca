from .one_stage import OneStageDetector, point_prior_generator
from .scoring import SCORE_FUNCTIONS, compute_scores

__all__ = ["OneStageDetector", "point_prior_generator", "SCORE_FUNCTIONS", "compute_scores"]
