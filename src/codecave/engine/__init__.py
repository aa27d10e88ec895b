"""Training engine shared by every method: configs, checkpoints, the training loop."""
