"""Analysis of results on disk: the leaderboard, Pareto fronts, claims with their statistics,
and which configurations a confirmation re-runs. Reads Parquet (search.results); no Ray."""
