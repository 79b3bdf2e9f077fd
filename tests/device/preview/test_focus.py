"""The focus score ranks sharp above blurred: every QR photo of tests/data/qr-photos, each
blurred by a real Gaussian at growing sigmas, scores lower at each step; and the region of
interest is what is scored."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.preview.focus import focus_score
from device.preview.picture import roi_of
from tests.support.paths import PROJECT_ROOT

PHOTOS = sorted((PROJECT_ROOT / "tests" / "data" / "qr-photos").glob("*/*.webp"))
SIGMAS = (0.0, 0.8, 1.5, 3.0, 6.0)


def grey(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return np.asarray(image, np.uint8)


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return image
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), np.uint8)


def test_the_photos_are_there() -> None:
    assert len(PHOTOS) >= 20


@pytest.mark.parametrize("path", PHOTOS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_each_step_of_blur_lowers_the_score(path: Path) -> None:
    image = grey(path)
    scores = [focus_score(blurred(image, sigma)) for sigma in SIGMAS]
    assert all(a > b for a, b in pairwise(scores)), scores
    assert scores[0] > 3 * scores[2], scores  # a technician sees it, not a rounding


def test_the_ranking_holds_at_a_cameras_size_too() -> None:
    """A 1280x720 frame (a photo scaled up into it, as a camera further away would see it)."""
    for path in PHOTOS[:10]:
        frame = cv2.resize(grey(path), (1280, 720), interpolation=cv2.INTER_CUBIC)
        scores = [focus_score(blurred(frame, sigma)) for sigma in SIGMAS]
        assert all(a > b for a, b in pairwise(scores)), (path, scores)


def test_the_region_of_interest_is_what_is_scored() -> None:
    """A sharp code in the region and a blurred one outside it: the region's score is the
    sharp one's, whatever blurs around it."""
    code = cv2.resize(grey(PHOTOS[0]), (320, 320))
    frame = np.full((480, 960), 128, np.uint8)
    frame[80:400, 40:360] = code  # inside the region (left half)
    frame[80:400, 600:920] = blurred(code, 4.0)  # outside it
    region = (0.0, 0.0, 0.5, 1.0)
    sharp_in_region = focus_score(roi_of(frame, region))
    frame[80:400, 40:360] = blurred(code, 4.0)
    assert focus_score(roi_of(frame, region)) < sharp_in_region / 3
    assert focus_score(np.zeros((0, 0), np.uint8)) == 0.0
