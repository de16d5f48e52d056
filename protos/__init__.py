"""Wire and ledger formats (.proto) and their generated Python code (`python -m protos.build`)."""
