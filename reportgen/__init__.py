"""reportgen: draft chest X-ray reports for a qualified reader to correct and sign.

Data flow: image/DICOM (`reportgen.data`) -> tensor -> encoder + findings head -> decoder
(`reportgen.models`) -> text (`reportgen.text`) -> labels/metrics (`reportgen.eval`) -> API (`reportgen.api`).
"""

__version__ = "0.1.0"


def load_checkpoint(path=None, **kwargs):
    """Load a checkpoint folder into a `Predictor` (see `reportgen.inference.predictor`).

    Imported lazily so that `import reportgen` stays cheap (no torch import at import time).
    """
    from reportgen.inference.predictor import load_checkpoint as _load

    return _load(path, **kwargs)
