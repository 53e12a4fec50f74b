"""DICOM as scanners and PACS exports write it, against pydicom's own test files: every file pydicom decodes
is decoded, every other one is one DataError line; compressed transfer syntaxes, files without an extension,
multi-frame files (one frame decoded, bounded before decoding), 16-bit colour and palettes."""

from __future__ import annotations

import io
import logging
import os
import shutil
import tracemalloc
import warnings
import zipfile

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files

from medvqa.data import images, pixels
from medvqa.data.errors import DataError
from medvqa.data.images import load_image, open_image
from medvqa.data.pixels import check_frame, one_line
from medvqa.data.sample import VQASample

CORPUS = [f for f in get_testdata_files() if os.path.isfile(f)]  # pydicom's 176 test files


def pydicom_decodes(path: str) -> bool:
    """What pydicom itself makes of the file: `dcmread(path).pixel_array` succeeds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            pydicom.dcmread(path).pixel_array  # noqa: B018
            return True
        except Exception:
            return False
        finally:
            logging.disable(logging.NOTSET)


def rgb(path, **kwargs) -> np.ndarray:
    return np.asarray(load_image(str(path), max_side=4096, **kwargs))


def test_every_file_pydicom_decodes_is_decoded_and_every_other_is_one_line(capfd):
    decoded, failed = [], {}
    for path in CORPUS:
        try:
            load_image(path, max_side=64)
            decoded.append(path)
        except DataError as e:
            failed[path] = str(e)
    assert sorted(decoded) == sorted(p for p in CORPUS if pydicom_decodes(p))
    assert len(decoded) >= 89  # the compressed CT / MR files need the decoders pyproject.toml installs
    for path, reason in failed.items():
        assert reason.startswith(path) and "\n" not in reason and "force=True" not in reason, reason
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out and "[ERROR]" not in printed.err + printed.out


def test_a_file_meta_without_a_transfer_syntax_is_named_not_a_crash():
    path = get_testdata_file("meta_missing_tsyntax.dcm")
    with pytest.raises(DataError, match=r"meta_missing_tsyntax\.dcm: cannot decode DICOM pixel data \(no "
                                        r"transfer syntax in the file meta\)"):  # fmt: skip
        load_image(path)


def test_pydicom_logs_nothing_while_decoding_and_logs_again_after(caplog):
    caplog.set_level(logging.DEBUG, logger="pydicom")
    with pytest.raises(DataError, match="exceptions were raised by all available plugins"):
        load_image(get_testdata_file("JPEG2000-embedded-sequence-delimiter.dcm"))
    assert [r for r in caplog.records if r.name.startswith("pydicom")] == []
    logging.getLogger("pydicom.pixels.decoders.base").error("after decoding")
    assert [r.getMessage() for r in caplog.records] == ["after decoding"]


def test_one_line_joins_lines_drops_programmer_advice_and_cuts_long_messages():
    error = ValueError("File is missing the 'DICM' prefix.\n  Use force=True to force reading.")
    assert one_line(error) == "File is missing the 'DICM' prefix."
    assert len(one_line(ValueError("x" * 1000))) == pixels.REASON_CHARS


@pytest.mark.parametrize(
    "compressed",
    ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"],
)
def test_lossless_compressed_mr_decodes_to_the_uncompressed_slice(compressed):
    assert np.array_equal(rgb(get_testdata_file(compressed)), rgb(get_testdata_file("MR_small.dcm")))


def test_jpeg_lossless_and_jpeg_2000_decode_as_pydicom_does():
    # JPEG Lossless SV1 needs pylibjpeg-libjpeg, JPEG 2000 pylibjpeg-openjpeg: pydicom alone refuses both
    lossless = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")
    assert np.array_equal(rgb(lossless), pydicom.dcmread(lossless).pixel_array)
    j2k = get_testdata_file("JPEG2000.dcm")
    assert rgb(j2k).shape == (1024, 256, 3)


def test_a_file_without_an_extension_is_read_by_content(tmp_path):
    cd_export = get_testdata_file("dicomdirtests/98892001/CT5N/2062")
    assert os.path.splitext(cd_export)[1] == ""
    shutil.copy(cd_export, tmp_path / "same.dcm")
    assert np.array_equal(rgb(cd_export), rgb(tmp_path / "same.dcm"))
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as z:
        z.write(cd_export, "CT5N/2062")
    member = VQASample(
        id="m", image=str(tmp_path / "export.zip"), image_member="CT5N/2062", question="q", answer="a"
    )
    assert np.array_equal(np.asarray(open_image(member, 4096)), rgb(cd_export))


def write_frames(path, frames: np.ndarray, rle: bool = False):
    """A multi-frame MONOCHROME2 file of `frames` (n, rows, cols) uint16, as pydicom's writer saves it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = frames.shape[1], frames.shape[2], frames.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = frames.astype(np.uint16).tobytes()
    if rle:
        ds.compress(RLELossless, frames.astype(np.uint16))
    ds.save_as(path, enforce_file_format=True)
    return path


def numbered_frames(n: int = 5, side: int = 8) -> np.ndarray:
    """Frame k: a ramp scaled by k + 1, so min..max windowing shows which frame was decoded (its corner)."""
    ramp = np.arange(side * side, dtype=np.uint16).reshape(side, side)
    return np.stack([ramp * (k + 1) + 1000 * k for k in range(n)])


@pytest.mark.parametrize("rle", [False, True])
def test_only_the_frame_dicom_frame_names_is_decoded(tmp_path, rle):
    frames = numbered_frames()
    path = write_frames(tmp_path / "cine.dcm", frames, rle)
    expected = lambda k: np.round((frames[k] - frames[k].min()) / np.ptp(frames[k]) * 255)  # noqa: E731
    for frame, k in [("middle", 2), ("first", 0), (4, 3), ("5", 4)]:
        assert np.array_equal(rgb(path, frame=frame)[..., 0], expected(k)), frame
    assert np.array_equal(rgb(path)[..., 0], expected(2))  # the default: the middle frame
    with pytest.raises(DataError, match=r"cine\.dcm: data\.dicom_frame=6 but the file has 5 frame\(s\)"):
        rgb(path, frame=6)
    for wrong in ("last", 0, -1, True):
        with pytest.raises(ValueError, match="data.dicom_frame=.*use middle, first or a frame number from 1"):
            check_frame(wrong)


def test_memory_is_bounded_by_one_frame_before_decoding(tmp_path, monkeypatch):
    frames = numbered_frames(n=5)
    path = write_frames(tmp_path / "cine.dcm", frames)
    one_frame = frames[0].nbytes
    monkeypatch.setattr(pixels, "MAX_DECODE_BYTES", one_frame)  # the whole volume is 5x over
    assert rgb(path).shape == (8, 8, 3)
    monkeypatch.setattr(pixels, "MAX_DECODE_BYTES", one_frame - 1)
    decoded = []
    monkeypatch.setattr(pydicom.pixels, "pixel_array", lambda *a, **k: decoded.append(1))
    with pytest.raises(DataError, match=rf"one 8x8 frame of 1 x 16 bits is {one_frame} bytes, over the"):
        rgb(path)
    assert decoded == []  # refused from the header, before any pixel was decoded


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_decoding_one_frame_holds_about_one_frame_not_the_volume(tmp_path, source):
    frames = np.tile(numbered_frames(n=1, side=256), (60, 1, 1))  # 60 x 256 x 256 x 2 bytes: 7.5 MiB
    path = write_frames(tmp_path / "cine.dcm", frames, rle=source == "bytes")
    image = str(path) if source == "path" else path.read_bytes()
    tracemalloc.start()
    try:
        load_image(image, max_side=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * frames[0].nbytes  # one 128 KiB frame and its float copies; the volume is 60 frames


def test_sixteen_bit_rgb_is_scaled_as_pydicom_decodes_it_not_wrapped(tmp_path):
    path = get_testdata_file("SC_rgb_rle_16bit.dcm")
    stored = pydicom.dcmread(path).pixel_array  # uint16 colour, 0..65535
    assert stored.dtype == np.uint16 and stored.max() > 255
    assert np.array_equal(rgb(path), np.round(stored / 65535 * 255).astype(np.uint8))
    # a 0..65535 ramp (pydicom's file holds only 0 and 65535, which wrapping around also gets right)
    ds = pydicom.dcmread(path)
    ramp = np.linspace(0, 65535, 100 * 100 * 3).round().astype(np.uint16).reshape(100, 100, 3)
    ds.decompress()
    ds.PixelData = ramp.tobytes()
    ds.save_as(tmp_path / "ramp.dcm")
    got = rgb(tmp_path / "ramp.dcm")
    assert np.array_equal(got, np.round(ramp / 65535 * 255).astype(np.uint8))
    assert got.min() == 0 and got.max() == 255 and np.all(np.diff(got.reshape(-1).astype(int)) >= 0)


def test_palette_color_applies_the_palette_as_pydicom_does():
    from pydicom.pixels import apply_color_lut

    path = get_testdata_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    palette = apply_color_lut(ds.pixel_array, ds)  # 16-bit palette entries (descriptor [256, 0, 16])
    expected = np.round(palette / 65535 * 255).astype(np.uint8)
    got = rgb(path)
    assert np.array_equal(got, expected)
    assert (got[..., 0] != got[..., 2]).mean() > 0.1  # in colour, not the grey palette indices


def test_a_bomb_past_twice_the_limit_gets_the_same_message_as_one_just_past_it(tmp_path):
    from medvqa.app import upload_problem

    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, format="PNG")  # 144 Mpx: PIL itself refuses past 134
    assert 2 * images.MAX_IMAGE_PIXELS < 12000 * 12000
    with pytest.raises(DataError, match=rf"the uploaded file: 144000000 pixels is over the {images.MAX_IMAGE_PIXELS} "
                                        "limit") as e:  # fmt: skip
        load_image(buffer.getvalue(), where="the uploaded file")
    assert "too large to open safely" in upload_problem(str(e.value))
    (tmp_path / "big.png").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="big.png: 144000000 pixels is over the"):
        load_image(tmp_path / "big.png")
