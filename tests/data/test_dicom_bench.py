"""`python -m medvqa.bench dicom_frames`: the multi-frame cine it writes is a real RLE file pydicom reads
frame by frame, and its measurement decodes one frame of it as the app and predict do."""

from __future__ import annotations

import numpy as np
import pydicom

from medvqa.bench import BENCHES
from medvqa.bench.dicom_frames import _measure, phantom, write_cine


def test_the_cine_holds_its_frames_and_one_is_measured_as_uploads_are_decoded(tmp_path):
    assert BENCHES["dicom_frames"] == "medvqa.bench.dicom_frames"
    path = write_cine(tmp_path / "cine.dcm", frames=40, size=128)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID.name == "RLE Lossless" and ds.NumberOfFrames == 40
    assert np.array_equal(pydicom.pixels.pixel_array(path, index=39), phantom(128))
    for how in ("app_upload_bytes", "predict_path"):
        measured = _measure(str(path), how)
        assert measured["image"] == [128, 128]
        volume_mb = 40 * 128 * 128 * 2 / 2**20
        assert measured["traced_peak_mb"] < volume_mb / 4  # one frame and its copies, not 40 frames
