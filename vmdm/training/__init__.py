"""Training: configuration and recipes, the training loop, the three VideoMDM objectives,
the checkpoint schema, profiling hooks and body-scale measurement."""
