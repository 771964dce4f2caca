from .one_stage import NonFinitePredictionError, OneStageDetector, point_prior_generator
from .scoring import (
    SCORE_FUNCTIONS,
    ClsPowQuality,
    ClsQuality,
    ClsScore,
    ScoreFunction,
    SqrtClsQuality,
    build_score_fn,
)

__all__ = [
    "NonFinitePredictionError",
    "OneStageDetector",
    "point_prior_generator",
    "SCORE_FUNCTIONS",
    "ScoreFunction",
    "ClsScore",
    "SqrtClsQuality",
    "ClsQuality",
    "ClsPowQuality",
    "build_score_fn",
]
