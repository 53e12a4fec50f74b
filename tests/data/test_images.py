"""Opening images: DICOM rescale + window, 16-bit scaling, zip members, and refusals with clear errors."""

import zipfile

import numpy as np
import pytest
from PIL import Image

from medvqa.data import images
from medvqa.data.errors import DataError
from medvqa.data.fixtures.pictures import ct_values, write_dicom, write_png16
from medvqa.data.images import open_image
from medvqa.data.pixels import to_uint8
from medvqa.data.sample import VQASample


def _open(path, member="", window=None):
    return np.asarray(open_image(VQASample(id="x", image=str(path), image_member=member, question="q", answer="a"),
                                 window=window))  # fmt: skip


def test_window_maps_center_minus_half_width_to_0_and_plus_half_width_to_255():
    hu = np.array([-1000.0, -160.0, 40.0, 200.0, 240.0, 700.0])
    # soft-tissue window (40, 400): -160 -> 0, 240 -> 255; 40 -> 127.5 and 200 -> 229.5 round to even
    assert to_uint8(hu, (40, 400)).tolist() == [0, 0, 128, 230, 255, 255]
    # no window: the image's own min..max; (200 + 1000) / 1700 * 255 = 180
    assert to_uint8(hu, None).tolist() == [0, 126, 156, 180, 186, 255]
    assert to_uint8(np.full(4, 7.0), None).tolist() == [0, 0, 0, 0]
    with pytest.raises(DataError, match="width must be positive"):
        to_uint8(hu, (40, 0))


def test_dicom_rescales_to_hu_then_applies_the_stored_window(tmp_path):
    path = write_dicom(
        tmp_path / "ct.dcm", seed=1, size=32, slope=1.0, intercept=-1024.0, window=(40.0, 400.0)
    )
    img = _open(path)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], to_uint8(ct_values(1, 32), (40, 400)))
    hu = ct_values(1, 32)[16, 16]  # soft tissue, 40 HU give or take the noise
    assert img[0, 0, 0] == 0 and img[16, 16, 0] == round((hu + 160) / 400 * 255)  # air -> black


def test_dicom_config_window_wins_and_slope_is_applied(tmp_path):
    # stored values are HU / 2 + 1024: only a reader that applies slope 2 and intercept -2048 gets HU back
    path = write_dicom(
        tmp_path / "ct.dcm", seed=2, size=32, slope=2.0, intercept=-2048.0, window=(40.0, 400.0)
    )
    stored = np.round((ct_values(2, 32) + 2048) / 2)  # what the file holds (odd HU lose their last bit)
    bone = to_uint8(stored * 2 - 2048, (400, 1800))
    assert np.array_equal(_open(path, window=[400, 1800])[..., 0], bone)
    nowin = write_dicom(tmp_path / "nowin.dcm", seed=2, size=32, window=None)
    assert np.array_equal(_open(nowin)[..., 0], to_uint8(ct_values(2, 32), None))


def test_dicom_monochrome1_is_inverted(tmp_path):
    normal = _open(write_dicom(tmp_path / "a.dcm", seed=3, size=16))
    inverted = _open(write_dicom(tmp_path / "b.dcm", seed=3, size=16, photometric="MONOCHROME1"))
    assert np.array_equal(inverted, 255 - normal)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    path = write_png16(tmp_path / "x.png", seed=4, size=32)
    raw = np.asarray(Image.open(path))
    assert Image.open(path).mode.startswith("I") and raw.max() > 255
    assert np.array_equal(_open(path)[..., 0], to_uint8(raw, None))
    assert np.array_equal(_open(path, window=[2048, 4096])[..., 0], to_uint8(raw, (2048, 4096)))


def test_zip_member_is_read_in_place_and_a_missing_one_named(tmp_path):
    archive = tmp_path / "images.zip"
    write_png16(tmp_path / "x.png", seed=5, size=16)
    write_dicom(tmp_path / "y.dcm", seed=5, size=16)
    with zipfile.ZipFile(archive, "w") as z:
        z.write(tmp_path / "x.png", "images/x.png")
        z.write(tmp_path / "y.dcm", "images/y.dcm")
    assert np.array_equal(_open(archive, "images/x.png"), _open(tmp_path / "x.png"))
    assert np.array_equal(_open(archive, "images/y.dcm"), _open(tmp_path / "y.dcm"))
    with pytest.raises(DataError, match="no member 'images/z.png'"):
        _open(archive, "images/z.png")


def test_decompression_bombs_are_refused_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.new("1", (9000, 8000)).save(big)  # 72 Mpx declared, a few kB on disk
    with pytest.raises(DataError, match=r"big.png: 9000x8000 pixels is over the \d+ limit"):
        _open(big)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 31 * 31)
    dcm = write_dicom(tmp_path / "c.dcm", seed=6, size=32)
    with pytest.raises(DataError, match="c.dcm: 32x32 pixels is over the 961 limit"):
        _open(dcm)


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg: cannot decode image for sample x"):
        _open(tmp_path / "bad.jpg")
    (tmp_path / "bad.dcm").write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.dcm: not a readable DICOM file"):
        _open(tmp_path / "bad.dcm")
    with pytest.raises(DataError, match="gone.png: image file not found"):
        _open(tmp_path / "gone.png")
