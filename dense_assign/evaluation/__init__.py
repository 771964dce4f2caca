from .assignment_stats import assignment_counts, assignment_statistics

__all__ = ["assignment_counts", "assignment_statistics"]
