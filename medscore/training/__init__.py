"""Training score networks by denoising score matching: the loop (CPU, CUDA, DDP), its data, noise levels,
learning-rate schedule, loss, and starting a run from another model's weights (``init_from``).

``train`` lives in :mod:`medscore.training.loop`; it is imported on first use so that the solvers do not load the
distributed trainer.
"""
