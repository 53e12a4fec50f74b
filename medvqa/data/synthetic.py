"""A generated radiology-like dataset whose answers depend on the pixels, written in the VQA-RAD OSF format.

Every image is drawn from five hidden factors, each visible in the pixels:
- modality: CT (mid-grey body, bright bone rim, black corners), MRI (bright, noisy body, no rim),
  X-Ray (grey background, bright body crossed by dark horizontal ribs);
- plane: axial (wide ellipse), coronal (tall ellipse), sagittal (tall half-ellipse, flat back);
- organ: head (one dark central disc), chest (two dark lungs), abdomen (one large liver blob);
- lesion: a hot spot in colour on the greyscale anatomy (as in a PET/CT fusion overlay), in half the
  images; a colour no other factor uses, so a tiny random-init vision tower picks it up quickly;
- side: the lesion's side in radiological convention (the patient's left is the image's right).
Questions only ask what the image shows, so a model that ignores the pixels scores at chance.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MODALITIES = ("CT", "MRI", "X-Ray")
PLANES = ("axial", "coronal", "sagittal")
ORGANS = ("head", "chest", "abdomen")
VQA_RAD_ORGAN = {"head": "HEAD", "chest": "CHEST", "abdomen": "ABD"}
ANNOTATION_FILE = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
META_FILE = "synthetic_meta.json"
HOT_SPOT = (255, 90, 0)  # PET-style colour overlay for lesions
VERSION = 3  # bump whenever the pictures or questions change: the reader caches by it


@dataclass(frozen=True)
class Scan:
    name: str
    patient: str
    modality: str
    plane: str
    organ: str
    lesion: bool
    side: str  # "left" / "right" (patient's side) or "" without a lesion

    @property
    def caption(self) -> str:
        finding = f"a bright lesion on the {self.side} side" if self.lesion else "no focal lesion"
        return f"{self.plane.capitalize()} {self.modality} image of the {self.organ} showing {finding}."


def _ellipse_mask(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _body_mask(plane: str, size: int) -> np.ndarray:
    c = size / 2
    if plane == "axial":
        return _ellipse_mask(size, size, c, c, size * 0.30, size * 0.42)
    if plane == "coronal":
        return _ellipse_mask(size, size, c, c, size * 0.44, size * 0.26)
    mask = _ellipse_mask(size, size, c, c - size * 0.06, size * 0.44, size * 0.36)
    mask[:, int(c + size * 0.2) :] = False  # sagittal: a flat back
    return mask


def _organ_mask(organ: str, size: int) -> np.ndarray:
    c = size / 2
    if organ == "head":
        return _ellipse_mask(size, size, c, c, size * 0.12, size * 0.12)
    if organ == "chest":
        left = _ellipse_mask(size, size, c, c - size * 0.11, size * 0.18, size * 0.06)
        return left | _ellipse_mask(size, size, c, c + size * 0.11, size * 0.18, size * 0.06)
    return _ellipse_mask(size, size, c - size * 0.05, c - size * 0.08, size * 0.14, size * 0.12)


def render(scan: Scan, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one scan as an 8-bit RGB array (size x size x 3): greyscale anatomy, a coloured hot spot."""
    body, organ = _body_mask(scan.plane, size), _organ_mask(scan.organ, size)
    img = np.zeros((size, size), dtype=np.float32)
    if scan.modality == "CT":
        img[body] = 110
        edge = body & ~_erode(body, 3)
        img[edge] = 235
        img[organ & body] = 55
    elif scan.modality == "MRI":
        img[body] = 175
        img[organ & body] = 90
        img += rng.normal(0, 22, img.shape) * body
    else:
        img[:] = 60
        img[body] = 190
        ribs = (np.arange(size) // 6) % 2 == 0
        img[ribs[:, None] & body] -= 45
        img[organ & body] = 120
    img = np.repeat(np.clip(img + rng.normal(0, 4, img.shape), 0, 255)[..., None], 3, axis=2)
    if scan.lesion:
        ys, xs = np.nonzero(_erode(body, size // 16) & ~organ & _side_band(scan.side, size))
        k, r = rng.integers(len(ys)), size * 0.10
        img[_ellipse_mask(size, size, ys[k], xs[k], r, r) & body] = HOT_SPOT
    return img.astype(np.uint8)


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for axis in (0, 1):
        for shift in range(1, r + 1):
            out &= np.roll(mask, shift, axis) & np.roll(mask, -shift, axis)
    return out


def _side_band(side: str, size: int) -> np.ndarray:
    """Radiological convention: the patient's left is the image's right. A margin keeps sides apart."""
    band = np.zeros((size, size), dtype=bool)
    margin, gap = int(size * 0.15), int(size * 0.11)  # gap > lesion radius: a spot never crosses the midline
    if side == "left":
        band[margin:-margin, size // 2 + gap :] = True
    else:
        band[margin:-margin, : size // 2 - gap] = True
    return band


def _questions(scan: Scan, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(question, answer, answer_type, question_type) for one scan: balanced yes/no plus open questions."""
    other = lambda values, v: rng.choice([x for x in values if x != v])  # noqa: E731
    asked_mod = scan.modality if rng.random() < 0.5 else other(MODALITIES, scan.modality)
    asked_plane = scan.plane if rng.random() < 0.5 else other(PLANES, scan.plane)
    asked_organ = scan.organ if rng.random() < 0.5 else other(ORGANS, scan.organ)
    yn = lambda b: "yes" if b else "no"  # noqa: E731
    closed = [
        ("Is there a lesion in this image?", yn(scan.lesion), "PRES"),
        (f"Is this a {asked_mod} image?", yn(asked_mod == scan.modality), "MODALITY"),
        (f"Is this an image in the {asked_plane} plane?", yn(asked_plane == scan.plane), "PLANE"),
        (f"Does this image show the {asked_organ}?", yn(asked_organ == scan.organ), "ORGAN"),
    ]
    opened = [
        ("What imaging modality was used?", scan.modality.lower(), "MODALITY"),
        ("In which plane was this image taken?", scan.plane, "PLANE"),
        ("Which organ is shown?", scan.organ, "ORGAN"),
    ]
    if scan.lesion:
        asked_side = rng.choice(("left", "right"))
        closed.append((f"Is the lesion on the {asked_side} side?", yn(asked_side == scan.side), "POS"))
        opened.append(("On which side is the lesion?", scan.side, "POS"))
    rows = [(q, a, "CLOSED", t) for q, a, t in rng.sample(closed, 3)]
    rows += [(q, a, "OPEN", t) for q, a, t in rng.sample(opened, 1)]
    return rows


def _scans(n_patients: int, images_per_patient: int, rng: random.Random) -> list[Scan]:
    scans = []
    for p in range(n_patients):
        for i in range(images_per_patient):
            lesion = rng.random() < 0.5
            scans.append(
                Scan(
                    name=f"synpic{p:04d}{i}",
                    patient=f"P{p:04d}",
                    modality=rng.choice(MODALITIES),
                    plane=rng.choice(PLANES),
                    organ=rng.choice(ORGANS),
                    lesion=lesion,
                    side=rng.choice(("left", "right")) if lesion else "",
                )  # fmt: skip
            )
    return scans


def generate(
    root: str | Path,
    n_patients: int = 160,
    images_per_patient: int = 3,
    test_fraction: float = 0.2,
    image_size: int = 112,
    seed: int = 0,
) -> Path:
    """Write the dataset under `root` exactly as VQA-RAD ships (JSON + image folder), plus a sidecar
    `synthetic_meta.json` with each image's hidden factors and caption. Same seed, same bytes."""
    root = Path(root)
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    scans = _scans(n_patients, images_per_patient, rng)
    test_patients = set(rng.sample(sorted({s.patient for s in scans}), round(n_patients * test_fraction)))
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    rows, meta, qid = [], {}, 0
    for scan in scans:
        Image.fromarray(render(scan, image_size, np_rng)).save(
            root / IMAGE_DIR / f"{scan.name}.jpg", quality=95
        )
        meta[f"{scan.name}.jpg"] = {
            "modality": scan.modality, "plane": scan.plane, "organ": scan.organ,
            "lesion": scan.lesion, "side": scan.side, "caption": scan.caption,
        }  # fmt: skip
        prefix = "test_" if scan.patient in test_patients else ""
        for question, answer, answer_type, qtype in _questions(scan, rng):
            qid += 1
            rows.append(_vqa_rad_row(qid, scan, question, answer, answer_type, qtype, prefix))
    _write_json(root / ANNOTATION_FILE, rows)
    _write_json(root / META_FILE, meta)
    return root


def _vqa_rad_row(qid, scan, question, answer, answer_type, qtype, prefix) -> dict:
    return {
        "qid": qid, "phrase_type": f"{prefix}freeform", "qid_linked_id": f"{scan.name}-{qid}",
        "image_case_url": f"https://synthetic.invalid/case?id={scan.patient}", "image_name": f"{scan.name}.jpg",
        "image_organ": VQA_RAD_ORGAN[scan.organ], "evaluation": "given", "question": question,
        "question_rephrase": "NULL", "question_relation": "NULL", "question_frame": "NULL",
        "question_type": qtype, "answer": answer, "answer_type": answer_type,
    }  # fmt: skip


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)
