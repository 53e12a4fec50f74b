"""Memory of decoding one multi-frame DICOM upload: one frame is decoded, never the volume.

    python -m medvqa.bench dicom_frames [frames=240] [size=2048] [root=DIR]

Writes a `frames` x `size` x `size` 16-bit CT cine (an RLE Lossless file, the frames a piecewise-constant
phantom in HU: a body, a bone ring, a lesion, so the file is tens of MB as a scanner's compressed cine is),
then, in a fresh process per path, reads the file's bytes and decodes them as the app decodes an upload
(`load_image(bytes)`) and as predict / training decode a file (`open_image(path)`). Reports the peak
resident set size (RSS) the decoding adds over what the process held with the bytes already read, and
the peak of Python-level allocations during decoding (tracemalloc), against what decoding every frame
would hold (`volume_mb`, frames x rows x columns x 2 bytes).
"""

from __future__ import annotations

import multiprocessing
import tempfile
from pathlib import Path

import numpy as np


def phantom(size: int) -> np.ndarray:
    """A CT slice in stored values (HU + 1024), piecewise constant so RLE compresses it as a scanner would
    compress a smooth slice."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    r2 = ((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / 0.4) ** 2
    hu = np.where(r2 <= 1, 40, -1000)
    hu[(r2 > 0.8) & (r2 <= 1)] = 700
    hu[(yy - 0.45) ** 2 + (xx - 0.6) ** 2 <= 0.01] = 200
    return (hu + 1024).astype(np.uint16)


def write_cine(path: Path, frames: int, size: int) -> Path:
    """A `frames`-frame RLE Lossless CT file: one frame encoded by pydicom, encapsulated `frames` times."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, generate_uid(), "CT"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.compress(RLELossless, phantom(size))
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate([frame] * frames, has_bot=True)
    ds["PixelData"].is_undefined_length = True
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _measure(path: str, how: str) -> dict:
    """Runs in a fresh (spawned) process: RSS before / peak during decoding one upload, in MB. The peak
    is sampled every millisecond by a thread (ru_maxrss would hide a peak under an earlier one)."""
    import threading
    import tracemalloc

    import psutil

    from medvqa.data.images import load_image, open_image
    from medvqa.data.sample import VQASample

    process = psutil.Process()
    data = Path(path).read_bytes() if how == "app_upload_bytes" else None
    rss_before = process.memory_info().rss
    peak, done = [rss_before], threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    if data is not None:
        image = load_image(data, where="the uploaded file")  # what the app does with an upload
    else:
        image = open_image(VQASample(id="x", image=path, question="", answer=""))  # predict / training
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    done.set()
    sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return {
        "image": list(image.size),
        "rss_before_mb": round(rss_before / 2**20, 1),
        "peak_rss_added_mb": round((peak[0] - rss_before) / 2**20, 1),
        "traced_peak_mb": round(traced_peak / 2**20, 1),
    }


def run(frames: int = 240, size: int = 2048, root: str | None = None) -> dict:
    frames, size = int(frames), int(size)
    base = Path(root) if root else Path(tempfile.mkdtemp(prefix="medvqa-dicom-"))
    path = base / f"cine-{frames}x{size}.dcm"
    if not path.is_file():
        write_cine(path, frames, size)
    result = {
        "frames": frames,
        "size": size,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "volume_mb": round(frames * size * size * 2 / 2**20, 1),
        "frame_mb": round(size * size * 2 / 2**20, 1),
    }
    spawn = multiprocessing.get_context("spawn")  # a clean interpreter per measurement
    for how in ("app_upload_bytes", "predict_path"):
        with spawn.Pool(1) as pool:
            result[how] = pool.apply(_measure, (str(path), how))
    return result
