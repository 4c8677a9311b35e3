"""Evaluation: CheXpert-style labeler, NLG + clinical-efficacy metrics, benchmarks (installed as `reportgen.eval`)."""
