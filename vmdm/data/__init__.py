"""Motion data: skeletons, the HumanML3D representation, the built-in corpus,
cameras, the 2D-only dataset with its teacher lifter, and real-data loaders."""
