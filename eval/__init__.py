"""Evaluation: CheXpert-style clinical labeler, NLG + clinical-efficacy metrics, benchmark runner (installed as `reportgen.eval`)."""
