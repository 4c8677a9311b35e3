"""Vocabulary of the rule-based CheXpert-style labeler: mention phrases and negation/uncertainty triggers.

Everything here is data (regular-expression fragments, lower case), compiled once by
`reportgen.eval.labeler.RuleLabeler`. The phrases follow the CheXpert labeler's conventions (Irvin et al.,
AAAI 2019) but were written for this project from radiology terminology:

* **Finding phrases** name an observation ("pleural effusion", "atelectasis"); the sentence context decides
  positive / negative / uncertain.
* **Hedged phrases** are findings that CheXpert always reads as uncertain when not negated ("vascular
  congestion", "costophrenic angle blunting": suggestive of, but not, the observation).
* **Anatomy phrases** name a structure ("heart size", "cardiomediastinal silhouette") whose *qualifier* decides
  the label: "normal"/"not enlarged" -> negative, "enlarged"/"widened" -> positive, "borderline"/"upper limits of
  normal" and CheXpert's "stable"/"unchanged" -> uncertain, no qualifier -> not a mention.
* **Other findings** are abnormalities outside the 14 observations (hernia, scoliosis, granuloma...). They get
  no column, but a positive or uncertain one means the study is not "No Finding" (CheXpert's rule).

Regex fragments may use `\\w*` suffixes; every phrase is matched on word boundaries.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------------------------------------------
# Mentions, per observation. Keys are names from reportgen.constants.OBSERVATIONS.
# ----------------------------------------------------------------------------------------------------------------

FINDING_PHRASES: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (
        r"widen(?:ed|ing) (?:of )?(?:the )?(?:superior )?mediastinum",
        r"mediastinal (?:widening|enlargement|prominence)",
        r"(?:widened|enlarged) (?:superior )?mediastin\w*",
        r"enlarged cardiomediastin\w*",
        r"(?:enlargement|widening|prominence) of the (?:superior )?(?:cardio)?mediastin\w*",
        r"mediastinal (?:mass(?:es)?|adenopathy|lymphadenopathy)",
        r"(?:anterior|posterior|middle|superior) mediastinal mass(?:es)?",
        r"paratracheal (?:stripe )?(?:widening|thickening|fullness|prominence|mass)",
        r"(?:prominent|widened|thickened) (?:right )?paratracheal stripe",
    ),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"cardiac enlargement",
        r"(?:left |right |bi)?(?:atrial|ventricular|chamber) enlargement",
        r"enlarged (?:heart|cardiac (?:silhouette|shadow|contour|size))",
        r"enlargement of the (?:heart|cardiac (?:silhouette|shadow|contour))",
        r"(?:heart|cardiac silhouette) (?:is |appears )?(?:mildly |moderately |markedly |severely )?enlarged",
    ),
    "Lung Opacity": (
        r"opaci\w*",
        r"infiltrat\w*",
        r"air[\s-]?space (?:disease|process|filling)",
        r"(?:increased|airspace|air space|parenchymal|patchy|streaky|hazy|focal|ill-defined|linear|reticular)"
        r" densit(?:y|ies)",
        r"haziness",
        r"decreased translucency",
        r"interstitial (?:markings?|pattern|prominence|disease|thickening|changes?|lung disease)",
        r"reticul\w*",
        r"ground[\s-]?glass",
        r"(?:peribronchial|bronchial wall|airway wall) thickening",
        r"peribronchial cuffing",
        r"scar(?:s|ring|red)?",
    ),
    "Lung Lesion": (
        r"mass(?:es)?",
        r"nodules?",
        r"lump",
        r"cavitary (?:lesions?|mass)",
        r"(?:lung|pulmonary|parenchymal|spiculated|cavitary) lesions?",
        r"carcinoma",
        r"neoplasm\w*",
        r"tumou?rs?",
        r"malignan\w*",
        r"(?:pulmonary|lung) metastas[ie]s",
        r"metastatic (?:disease|nodules?|lesions?)",
    ),
    "Edema": (
        r"(?:pulmonary |interstitial |alveolar |perihilar )?edema",
        r"(?:congestive )?heart failure",
        r"chf",
    ),
    "Consolidation": (r"consolidat\w*",),
    "Pneumonia": (
        r"(?:broncho)?pneumonias?",
        r"infections?",
        r"infectious",
        r"pneumonitis",
    ),
    "Atelectasis": (
        r"atelecta\w*",
        r"collaps(?:e|ed)",
    ),
    "Pneumothorax": (r"(?:hydro)?pneumothora(?:x|ces)",),
    "Pleural Effusion": (
        r"effusions?",
        r"pleural fluid",
        r"hydrothora(?:x|ces)",
        r"hemothora(?:x|ces)",
    ),
    "Pleural Other": (
        r"pleural (?:thickening|plaques?|calcifications?|scar(?:s|ring)?|reaction)",
        r"pleural[\s-]+(?:parenchymal|peripheral) scar(?:s|ring)?",
        r"pleuro[\s-]?parenchymal scar(?:s|ring)?",
        r"pleuro[\s-]?pericardial scar(?:s|ring)?",
        r"fibrothorax",
        r"fibros[ie]s",
        r"fibrotic",
        r"apical (?:pleural )?capping",
    ),
    "Fracture": (r"fractur\w*", r"fx"),
    "Support Devices": (
        r"(?:endotracheal|nasogastric|orogastric|feeding|chest|et|ng|og|tracheostomy|thoracostomy|dobhoff|g|j)"
        r" tubes?",
        r"tubes?",
        r"(?:central|venous|picc|midline|arterial|swan[\s-]ganz|jugular|subclavian|dialysis) (?:venous )?"
        r"(?:lines?|catheters?)",
        r"picc",
        r"catheters?",
        r"pace(?:r|maker)s?",
        r"pacing (?:wires?|leads?|device)",
        r"(?:aicd|icd|defibrillator)s?",
        r"(?:single|dual)[\s-]lead",
        r"generator",
        r"(?:prosthetic |mechanical |bioprosthetic )?valve replacement",
        r"(?:prosthetic|mechanical|bioprosthetic|artificial) valves?",
        r"(?:tracheal|airway|bronchial|esophageal|svc) stents?",
        r"tracheostomy",
        r"(?:cabg|graft|bypass graft|surgical) markers?",
        r"epicardial (?:pacing )?(?:wires?|leads?)",
        r"(?:external |cardiac |ecg |ekg |telemetry )+(?:monitor(?:ing)? )?leads",
        r"(?:catheter |line |tube |its |the |distal |with )tip (?:projects?|projecting|overlies|overlying|terminates|"
        r"terminating|at|in|near|within|approximately|located|positioned|is)",
        r"hardware",
        r"(?:port[\s-]?a[\s-]?cath|mediport|port)",
        r"drains?",
        r"(?:fixation )?(?:plates?|screws?|rods?)",
        r"arthroplast\w*",
        r"prosthes[ie]s",
        r"cannula",
        r"coils?",
        r"(?:support|monitoring) (?:devices?|apparatus|equipment)",
        r"devices?",
        r"lvad|iabp|intra-aortic balloon pump",
        r"electrodes?",
    ),
}

#: Phrases that name two observations at once.
SHARED_FINDING_PHRASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("Lung Lesion", "Lung Opacity"): (r"nodular (?:densit(?:y|ies)|opacit(?:y|ies)|opacification)",),
}
SHARED_ANATOMY_PHRASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("Cardiomegaly", "Enlarged Cardiomediastinum"): (r"cardiac and mediastinal (?:contours?|silhouettes?)",),
}

#: Look-alikes of mention phrases that are not the observation ("calcified nodule", "pericardial effusion",
#: "plate-like atelectasis"); matched first, they count as other findings (they still rule out "No Finding").
EXCLUDED_PHRASES: tuple[str, ...] = (
    r"(?:soft tissue|bone|bony|breast|calcific|calcified|metallic) (?:densit(?:y|ies)|opacit(?:y|ies))",
    r"calcified (?:\w+ )?(?:nodul\w*|granulom\w*|opacit\w*)",
    r"(?:soft tissue|breast|neck|thyroid|abdominal) mass(?:es)?",
    r"mass effect",
    r"nodules? (?:is |are )?(?:\w+ )?calcified",
    r"muscle mass",
    r"(?:pericardial|joint|suprapatellar) effusions?",
    r"(?:vertebral|vertebra|body|compression|height) collapse",
    r"collapse of (?:the )?(?:\w+ )?vertebr\w*",
    r"plate[\s-]?like",
    r"(?:fallopian|eustachian|neural) tubes?",
    r"aortic (?:valve|stent)s? calcif\w*",
    r"breast (?:prosthes[ie]s|implants?)",
    r"(?:prior|old|previous|remote|healed) (?:granulomatous |fungal )?infections?",
)

#: Phrases that count only when negated: "no acute bony abnormality" says "no fracture", but an abnormality that
#: is present is not necessarily a fracture.
NEGATED_ONLY_PHRASES: dict[str, tuple[str, ...]] = {
    "Fracture": (
        r"(?:acute )?(?:bony|osseous|bone|skeletal) (?:abnormalit\w*|findings?|injur\w*|process(?:es)?)",
        r"(?:acute )?(?:bony|osseous|skeletal) (?:or soft tissue )?abnormalit\w*",
    ),
}

#: Phrases read as uncertain unless negated (CheXpert post-negation uncertainty rules).
HEDGED_PHRASES: dict[str, tuple[str, ...]] = {
    "Edema": (
        r"(?:pulmonary )?vascular (?:congestion|prominence|engorgement)",
        r"pulmonary (?:venous )?congestion",
        r"(?:vascular )?indistinctness",
        r"cephalization",
        r"kerley b?\s?lines",
    ),
    "Pleural Effusion": (
        r"blunt(?:ing|ed) (?:of )?(?:the )?(?:\w+ )?(?:\w+ )?costophrenic",
        r"costophrenic (?:angles?|sulc[iu]s?|recess(?:es)?|xxxx)? ?(?:is |are )?blunt\w*",
    ),
}

#: Anatomy whose qualifier decides the label. Shared subjects ("heart and mediastinum") appear in both lists.
ANATOMY_PHRASES: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (
        r"heart(?: size)?",
        r"cardiac (?:silhouette|size|shadow|contours?|dimensions)",
        r"size of the heart",
    ),
    "Enlarged Cardiomediastinum": (
        r"cardio[\s-]?mediastin(?:um|al(?: (?:silhouette|contours?|shadow|size|structures))?)",
        r"(?:superior )?mediastinum",
        r"mediastinal (?:silhouette|contours?|configuration|width|structures|shadow)",
        r"hilar and mediastinal (?:contours?|silhouettes?)",
        r"mediastinal and hilar (?:contours?|silhouettes?)",
        r"pericardial silhouette",
    ),
}

#: Qualifiers of an anatomy mention, strongest first: the first class found wins for one window.
ANATOMY_UNCERTAIN = (
    r"borderline",
    r"(?:at |within )?(?:the )?(?:upper|high|top)(?:[\s-]+(?:limits?|range|end))?(?: of)?[\s-]+normal",
    r"normal (?:to|or) (?:mildly |slightly )?(?:enlarged|large|increased|prominent)",
    r"(?:mildly |slightly )?(?:enlarged|prominent|large)(?: or | versus | vs\.? )(?:normal|upper)",
    r"difficult to (?:assess|evaluate)",
    r"(?:poorly|not well|incompletely) (?:evaluated|assessed|visualized)",
)
ANATOMY_NEGATIVE = (
    r"normal",
    r"unremarkable",
    r"within (?:normal|expected) limits",
    r"wnl",
    r"not (?:significantly |appreciably |markedly |substantially |grossly )?(?:enlarged|widened|increased|prominent)",
    r"no (?:significant |appreciable |gross )?(?:enlargement|widening|cardiomegaly)",
    r"negative",
    r"small",
)
ANATOMY_POSITIVE = (
    r"enlarge(?:d|ment)",
    r"widen(?:ed|ing)",
    r"(?:large|increased|prominent|prominence|globular|abnormal|bulging|convexity|mass)",
    r"increase in (?:the )?size",
)
ANATOMY_STABLE = (
    r"stable",
    r"unchanged",
    r"(?:similar|comparable|identical) (?:to|with|in appearance)",
    r"not (?:significantly )?changed",
    r"no (?:significant |interval )*change",
)

# ----------------------------------------------------------------------------------------------------------------
# Findings outside the 14 observations: they only make "No Finding" false (CheXpert's no-finding mentions).
# ----------------------------------------------------------------------------------------------------------------

OTHER_FINDING_PHRASES: tuple[str, ...] = (
    r"emphysema\w*",
    r"copd",
    r"chronic obstructive",
    r"hyperinflat\w*",
    r"hyperexpan\w*",
    r"hyperaerat\w*",
    r"bullae|bullous|blebs?",
    r"hernias?",
    r"scoliosis|scoliotic|kyphosis|kyphotic|dextroscoliosis|levoscoliosis",
    r"degenera\w*",
    r"spondylos\w*|osteophyt\w*|arthriti\w*|arthropathy",
    r"osteopeni\w*|demineraliz\w*|osteoporo\w*",
    r"calcifi\w*|calcific",
    r"granulom\w*",
    r"atheroscl\w*|atheromatous",
    r"tortuous\w*|tortuosity|ectatic|ectasia|unfolded|unfolding",
    r"aneurysm\w*",
    r"(?:elevation|elevated|eventration) (?:of )?(?:the )?(?:\w+ )?(?:hemi)?diaphragm\w*",
    r"(?:hemi)?diaphragm\w* (?:is |are )?(?:elevated|elevation)",
    r"volume loss",
    r"(?:lymph)?adenopathy",
    r"hilar (?:enlargement|prominence|fullness)",
    r"bronchiectasis|bronchitis|bronchiolitis|airways? disease|asthma|bronchospasm",
    r"aspiration",
    r"pneumomediastinum|pneumoperitoneum|subcutaneous emphysema",
    r"plaques?",
    r"deformit\w*",
    r"hematoma|hemorrhage|contusion",
    r"cysts?|cystic",
    r"lucenc\w*",
    r"sclero\w*",
    r"metastas[ie]s|metastatic",
    r"(?:pulmonary arterial |pulmonary artery )?hypertension",
    r"cuffing|thickening",
    r"prominen\w*",
    r"(?:dextro|levo)?curvature",
    r"(?:bronchovascular )?crowding",
    r"densit(?:y|ies)",
    r"post[\s-]?surgical|postoperative|post[\s-]?operative|sternotomy|thoracotomy|lobectomy|pneumonectomy"
    r"|mastectomy|cabg",
    r"foreign bod\w*|bullet|shrapnel|radiopaque",
    r"thoracentesis",
)

# ----------------------------------------------------------------------------------------------------------------
# Context triggers. "pre" triggers act on mentions after them in the same clause, "post" on mentions before them,
# "both" either way. They are compiled into one alternation in the order of this file; where two could start at the
# same word, the first listed wins, so a longer phrase ("is not seen") is listed before its prefix ("is").
# ----------------------------------------------------------------------------------------------------------------

#: Uncertainty that must be matched before negation (it contains a negation word): CheXpert's pre-negation rules.
PRENEG_UNCERTAIN = (
    r"can\s?not (?:be )?(?:entirely |completely |definitely |totally )?(?:exclude[ds]?|ruled? out|excluded)",
    r"can'?t (?:be )?(?:exclude[ds]?|ruled? out)",
    r"(?:could|may|can|would) not (?:be )?(?:entirely |completely )?(?:exclude[ds]?|ruled? out)",
    r"(?:is|are|was|were|be|been)? ?not (?:be )?(?:entirely |completely |definitely )?(?:excluded|ruled out)",
    r"no (?:definite |convincing |other )?evidence to (?:exclude|rule out)",
    r"not (?:be )?(?:well |clearly |definitely |entirely |fully )(?:seen|visualized|evaluated|assessed|excluded)",
    r"not (?:well )?appreciated",
    r"difficult to (?:exclude|rule out|assess|evaluate)",
    r"no new",
    r"no (?:definite )?(?:interval )?(?:worsening|increase|improvement|decrease)",
)

#: Phrases that contain a negation word but do not negate ("no change in the effusion").
PSEUDO_NEGATION = (
    r"no (?:significant |appreciable |interval |substantial |definite |gross )*(?:change|progression)",
    r"not (?:only|necessarily|changed)",
    r"without (?:significant |interval )*change",
    r"not been (?:significantly )?changed",
    r"(?:is|are|was|were) not (?:significantly )?changed",
    r"no longer (?:changing)",
    # about the prior study, not this one: "opacity, not seen on the prior"
    r"not (?:well )?(?:seen|visualized|present|identified|appreciated|evident|visible) (?:on|in) (?:the )?"
    r"(?:prior|previous|comparison|earlier|old)\w*",
)

PRE_NEGATION = (
    r"no",
    r"not",
    r"without",
    r"absent",
    r"absence of",
    r"free of",
    r"clear of",
    r"negative for",
    r"negative",
    r"resolution of",
    r"resolved",
    r"removal of",
    r"removed",
    r"rather than",
    r"rules? out",
    r"ruled out",
    r"exclud(?:es|ed|ing)",
    r"neither",
    r"nor",
    r"never",
    r"denies",
    r"interval clearing of",
    r"cleared",
    r"no longer",
)

POST_NEGATION = (
    r"(?:is |are |was |were |has been |have been )?(?:not|no longer) (?:\w+ )?(?:seen|identified|visualized|"
    r"demonstrated|present|evident|noted|apparent|detected|visible|shown|observed|recognized|appreciable)",
    r"(?:has |have |has since |have since )?(?:completely |nearly |largely |since )?"
    r"(?:resolved|cleared|disappeared|been removed|removed|been withdrawn)",
    r"(?:is |are |was |were )?absent",
    r"(?:is|are|was|were) negative(?! for)",
    r"(?:is |are |was |were )?ruled out",
    r"(?:is |are |was |were )?not (?:enlarged|widened|increased)",
)

PRE_UNCERTAIN = (
    r"may",
    r"might",
    r"could",
    r"would",
    r"possible",
    r"possibly",
    r"probable",
    r"probably",
    r"likely",
    r"presum(?:ed|ably|ptive)",
    r"suspect(?:ed|s)?",
    r"suspicio(?:us|n) (?:for|of)",
    r"suspicious",
    r"concern(?:ing)? (?:for|of)",
    r"worrisome (?:for|of)",
    r"question(?:able)?(?: of)?",
    r"questionabl[ey]",
    r"suggestion of",
    r"differential(?: diagnos[ie]s)?",
    r"considerations? (?:include|of)",
    r"consider",
    r"equivocal",
    r"indeterminate",
    r"borderline",
    r"uncertain",
    r"cannot exclude",
    r"rule out",
    r"(?:to )?(?:evaluate|assess|exclude) for",
    r"correlat\w* (?:clinically )?for",
    r"(?:may|could|might) (?:represent|reflect|indicate|be)",
    r"obscur\w*",
    r"if",
)

POST_UNCERTAIN = (
    r"(?:is|are|was|were) (?:also )?(?:possible|suspected|questioned|questionable|likely|probable|considered)",
    r"(?:is |are )?(?:less|more|most|also) likely",
    r"(?:is|are) (?:not excluded|suspected|possible|questionable|equivocal|indeterminate)",
    r"not excluded",
    r"(?:may|might|could|can) (?:also )?(?:be )?(?:present|seen|exist)",
    r"(?:is|are) (?:poorly|incompletely|not well) (?:evaluated|assessed|visualized)",
)

#: Coordination that CheXpert reads as uncertain between two findings ("atelectasis or scarring").
OR_CONJUNCTION = (r"and/or", r"or", r"versus", r"vs")

# ----------------------------------------------------------------------------------------------------------------
# Scope.
# ----------------------------------------------------------------------------------------------------------------

#: Sentence punctuation ends every scope (a period between two digits, "1.5 cm", does not).
CLAUSE_PUNCTUATION = r"[.;:?!\n]"

#: Clause-level conjunctions also end every scope.
CLAUSE_WORDS = (
    r"but",
    r"however",
    r"although",
    r"though",
    r"whereas",
    r"except",
    r"which",
    r"that",
    r"yet",
    r"nevertheless",
    r"otherwise",
)

#: Ends only a *negation* scope (a new assertion starts): "no effusion, there is atelectasis".
NEGATION_BREAK = (
    r"there (?:is|are|has|have)",
    r"with",
    r"and (?:there|a|an)",
    r"(?:other|apart|aside) (?:than|from)",
    r"besides",
    r"(?:is|are|has|have) (?:been )?(?:seen|noted|present|identified|demonstrated|evident)",
)

#: A comma then a newly described finding also ends a negation: "no pneumothorax, small left effusion".
NEGATION_BREAK_COMMA = (
    r",\s*(?:and )?(?:mild|moderate|severe|small|minimal|trace|persistent|stable|increased|decreased|new|chronic|"
    r"again|redemonstrat\w*|residual|patchy|streaky|bibasilar|possible|possibly|probable|likely|suspected|"
    r"questionable)(?![\w-])"
)
