"""The small vocabularies the readers map release values onto, so filters and breakdowns group what a
clinician would group: VQA-RAD's per-image answers (`t2 weighted`, `cxr`, `gadolinium`), SLAKE's `X-Ray`
and MedPix's `MR` all land on one modality name; plane values that are not a plane land on ''.

modality: CT, MRI, X-ray, ultrasound, PET, nuclear medicine, mammography, angiography, fluoroscopy
plane:    axial, coronal, sagittal, oblique, lateral, frontal, pa, ap
question types: VQA-RAD's own (MODALITY, PLANE, ORGAN, ABN, PRES, POS, COLOR, SIZE, ATTRIB, COUNT, OTHER),
          with the release's typos (ATRIB, PRSE) mapped to the type they misspell.

A value that names none of these maps to '' (the reader keeps the raw value in `extra`): a contrast
("with contrast", "oral and iv") says how an image was taken, not with which machine.
"""

from __future__ import annotations

import re

# (modality, words that name it). Checked in order: "ct angiography" is CT, "mr angiography" MRI,
# a bare "angiogram" angiography. Whole words only, so "pa" never matches inside "paranasal".
MODALITY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("MRI", ("mri", "mr", "mra", "magnetic resonance", "t1", "t2", "t1 weighted", "t2 weighted", "flair",
             "dwi", "diffusion", "diffusion weighted", "adc", "gadolinium", "gre", "swi", "stir")),
    ("CT", ("ct", "cta", "computed tomography", "cat scan")),
    ("PET", ("pet", "positron emission")),
    ("nuclear medicine", ("nuclear medicine", "scintigraphy", "spect", "bone scan")),
    ("mammography", ("mammogram", "mammography")),
    ("ultrasound", ("ultrasound", "us", "sonography", "sonogram", "doppler", "echocardiogram")),
    ("fluoroscopy", ("fluoroscopy", "barium", "esophagram", "upper gi")),
    ("X-ray", ("x ray", "xray", "xr", "cxr", "radiograph", "plain film", "film", "kub", "pa", "ap")),
    ("angiography", ("angiography", "angiogram", "dsa")),
)  # fmt: skip
PLANE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("axial", ("axial", "transverse", "transaxial", "cross sectional")),
    ("coronal", ("coronal",)),
    ("sagittal", ("sagittal", "sagital")),
    ("oblique", ("oblique",)),
    ("lateral", ("lateral", "lat")),
    ("pa", ("pa", "posteroanterior", "postero anterior")),
    ("ap", ("ap", "anteroposterior", "antero posterior")),
    ("frontal", ("frontal",)),
)
QUESTION_TYPE_TYPOS = {"ATRIB": "ATTRIB", "PRSE": "PRES"}


def _words(value: str) -> str:
    """Lower case, punctuation and dashes to spaces: 'MRI-FLAIR' -> ' mri flair ' (padded for word search)."""
    return " " + " ".join(re.sub(r"[^a-z0-9]+", " ", value.lower()).split()) + " "


def _first(value: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    padded = _words(value)
    for name, words in table:
        if any(f" {w} " in padded for w in words):
            return name
    return ""


def modality(value: str) -> str:
    """The vocabulary's modality a release value names ('t2 weighted' -> 'MRI', 'cxr' -> 'X-ray'); ''."""
    return _first(value, MODALITY_WORDS)


def plane(value: str) -> str:
    """The vocabulary's plane a release value names ('Transverse' -> 'axial', 'posteroanterior' -> 'pa');
    '' for values that are not a plane ('NOS - Not specified', 'Photograph', 'Gross Pathology')."""
    return _first(value, PLANE_WORDS)


def question_type(value: str) -> str:
    """A VQA-RAD question type in upper case, each part of a two-part one ('PRES, ATRIB') with the release's
    typos corrected: 'ATRIB' -> 'ATTRIB', 'PRSE' -> 'PRES'."""
    parts = [p.strip().upper() for p in value.replace("/", ",").split(",") if p.strip()]
    return ", ".join(QUESTION_TYPE_TYPOS.get(p, p) for p in parts)
