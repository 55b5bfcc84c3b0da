"""Provider backends: one module per vendor; each imports its own SDK and nothing else does."""
