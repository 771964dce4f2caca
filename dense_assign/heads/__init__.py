from .dense_head import QUALITY_BRANCHES, DenseHead, Scale

__all__ = ["DenseHead", "Scale", "QUALITY_BRANCHES"]
