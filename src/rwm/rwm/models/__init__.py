"""World models: RWM (GRU, dual autoregression) and the baselines of the paper's Table S7."""
