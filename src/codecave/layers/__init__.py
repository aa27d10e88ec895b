"""Building blocks shared by the models: warping, residual blocks, expert mixing."""
