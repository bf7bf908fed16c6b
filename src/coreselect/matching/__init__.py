"""Gradient matching: non-negative orthogonal matching pursuit (GradMatch's solver)."""

from coreselect.matching.omp import MatchingResult, nonnegative_least_squares, nonnegative_omp

__all__ = ["MatchingResult", "nonnegative_least_squares", "nonnegative_omp"]
