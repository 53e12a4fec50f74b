"""The built-in synthetic dataset: generated on first use into `root` in the VQA-RAD OSF format and read
back through the VQA-RAD reader, plus each image's true modality / plane / organ / caption."""

from __future__ import annotations

import json
from pathlib import Path

from medvqa.data import synthetic
from medvqa.data.errors import BadSamples
from medvqa.data.formats import vqa_rad
from medvqa.data.sample import VQASample


def read(
    root: str | Path,
    bad: BadSamples | None = None,
    n_patients: int = 160,
    images_per_patient: int = 3,
    test_fraction: float = 0.2,
    image_size: int = 112,
    seed: int = 0,
) -> list[VQASample]:
    # one folder per generation setting, so changing a knob never reuses stale files
    version = f"n{n_patients}x{images_per_patient}-s{image_size}-seed{seed}"
    folder = Path(root) / version
    if not (folder / synthetic.META_FILE).is_file():  # written last, so its presence means complete
        synthetic.generate(folder, n_patients, images_per_patient, test_fraction, image_size, seed)
    samples = vqa_rad.read_osf(folder, bad or BadSamples())
    meta = json.loads((folder / synthetic.META_FILE).read_text())
    for s in samples:
        m = meta[Path(s.image).name]
        s.image = f"{version}/{s.image}"  # readers give paths relative to data.root
        s.modality, s.plane, s.organ, s.caption = m["modality"], m["plane"], m["organ"], m["caption"]
        s.source, s.extra = "synthetic", {"lesion": m["lesion"], "side": m["side"]}
    return samples
