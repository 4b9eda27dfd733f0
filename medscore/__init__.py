"""medscore: NCSN score-based generative priors for medical scans, on MONAI.

Import what you need from the submodules (kept lazy so ``import medscore`` and the CLI start fast):
``medscore.api`` (reconstruct_mri, inpaint, denoise, sample), ``medscore.training.loop``,
``medscore.priors.checkpoint``, ``medscore.physics``, ``medscore.sampling``.
"""

__version__ = "0.1.0"
