"""deploybench: how should I serve this model? Measured answers."""
