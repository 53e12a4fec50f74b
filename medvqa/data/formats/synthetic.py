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
    generate: bool = True,
) -> list[VQASample]:
    """The dataset under `root`, generated there first when absent; with `generate=False` (a finished
    run's data, read by the app, predict or export) an absent one is an error instead of a new copy."""
    # one folder per generator version and setting, so a change never reuses stale files
    version = f"v{synthetic.VERSION}-n{n_patients}x{images_per_patient}-s{image_size}-seed{seed}"
    folder = Path(root) / version
    if not (folder / synthetic.META_FILE).is_file():  # written last, so its presence means complete
        if not generate:
            raise FileNotFoundError(
                f"data.root={root} has no complete {version}/ (no {synthetic.META_FILE}): the run's synthetic "
                "data is gone; regenerate it with the run's own command (python -m medvqa.run ...) or point "
                "data.root in the run's config.yaml at where it is"
            )
        synthetic.generate(folder, n_patients, images_per_patient, test_fraction, image_size, seed)
    samples = vqa_rad.read_osf(folder, bad or BadSamples())
    meta = json.loads((folder / synthetic.META_FILE).read_text())
    for s in samples:
        m = meta[Path(s.image).name]
        s.image = f"{version}/{s.image}"  # readers give paths relative to data.root
        s.modality, s.plane, s.organ, s.caption = m["modality"], m["plane"], m["organ"], m["caption"]
        s.source, s.extra = "synthetic", {"lesion": m["lesion"], "side": m["side"]}
    return samples
