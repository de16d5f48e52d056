"""The coordinator: Flower ServerApp, aggregation, leaderboard, bundle publication, node registry."""
