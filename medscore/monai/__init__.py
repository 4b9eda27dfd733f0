"""MONAI front ends: ``ScoreInferer`` (a ``monai.inferers.Inferer``) and ``medscore export-bundle`` (a MONAI bundle
that ``python -m monai.bundle run`` executes)."""
