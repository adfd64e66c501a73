"""Metrics, test-split forecasts, the leaderboard and plots."""
