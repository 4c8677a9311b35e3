"""Names shared by every layer: the 14 CheXpert observations and the draft disclaimer.

The observation order is the CheXpert/CheXbert publication order. It is the column order of every
label array and every label CSV this project writes; never reorder it once published.
"""

OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: The five observations most papers report CE on (CheXpert competition tasks).
FIVE_OBSERVATIONS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
)

#: Label values in every label array: positive, negative, uncertain; "not mentioned" is NaN.
POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0

#: Every output that carries generated text carries this sentence.
DISCLAIMER = "AI-generated draft: requires review by a qualified radiologist. Not for clinical use without that review."

#: The largest number of images (views) in one study.
MAX_VIEWS = 4
