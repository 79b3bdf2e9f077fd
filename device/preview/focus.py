"""How sharp the region of interest is: the variance of its Laplacian.

Why this measure: it is one OpenCV call over the grey region (a 3x3 kernel, no tuning) and, of
the focus measures compared in the literature (Pertuz et al., "Analysis of focus measure
operators for shape-from-focus", 2013), the Laplacian family ranks focus well on textured,
high-contrast scenes such as printed codes. Tenengrad (the Sobel gradient's energy) ranks the
same way but costs two convolutions. Blur takes the high frequencies away, and the Laplacian is
made of them: the score falls with every step of blur (tests/device/preview/test_focus.py
measures it on the repo's QR photos, blurred by a real Gaussian). The number depends on what is
in front of the camera and on the region's size, so it ranks positions of one lens on one scene:
a technician turns the lens until it peaks; it is not an absolute grade.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt


def focus_score(grey: npt.NDArray[np.uint8]) -> float:
    """The variance of the Laplacian of a grey image (higher is sharper); 0 for an empty one."""
    if grey.size == 0:
        return 0.0
    laplacian = cv2.Laplacian(grey, cv2.CV_64F)
    return float(laplacian.var())
