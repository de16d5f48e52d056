"""The community's side of Cairn: store, importers, consent, features, local DP training, queries."""
