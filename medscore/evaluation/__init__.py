"""Evaluation on held-out slices: the benchmark's degradations as data (``specs``), the benchmark and demo reports
(``benchmark``), preset tuning on the validation slab (``tuning``) and quality-vs-NFE curves (``curves``)."""
