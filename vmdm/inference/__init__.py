"""Using a trained model: loading a checkpoint (:mod:`.loading`) and the prior as a 2D-to-3D
lifter (:mod:`.lifting`)."""
