"""Generated gate-like frames: a phone screen or an ID card held up to a gate's camera.

Deterministic by seed, so a benchmark figure and a test result can be reproduced exactly. Each
frame is 1280x720 grey and shows one QR code of a Vietnamese CCCD payload (or none), seen the way
a gate sees it:

- the code sits on a phone screen (dark bezel, bright screen, specular glare that washes out part
  of the code) or on an ID card (beige card, grey print, printed text lines beside the code);
- the card or phone is turned in the image plane (any angle), tilted away from the camera
  (perspective), shaded by uneven light, defocused or moved (Gaussian or motion blur), and the
  sensor adds noise;
- the background is a room: smooth light gradients, a few large objects, sensor noise.

`hard` frames are what separates decoders: 2.5 to 4 camera pixels per module, strong tilt, blur,
glare and noise together. `easy` frames are what a cooperative visitor shows: 4 to 8 pixels per
module, mild conditions. `empty` frames are the room with nobody showing a code.

Run `.venv/bin/python -m gatescan.testing.gate_frames --out DIR` to write a set as PNGs to look at.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from device.decode.base import Frame
from gatescan.testing.samples import code_modules, sample_cards

FRAME_SIZE = (1280, 720)  # (width, height)
FloatImage = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Conditions:
    """How one frame was made: enough to tell why a decoder missed it."""

    holder: str  # "phone" or "card"
    module_px: float  # camera pixels per module, measured along the code's edge after the warp
    rotation_deg: float  # in-plane turn
    tilt_deg: float  # out-of-plane tilt (perspective)
    blur: str  # "gauss 1.1" or "motion 5px"
    glare: float  # 0 (none) .. 1 (white)
    noise: float  # standard deviation, grey levels
    contrast: int  # light minus dark grey level of the code before light and glare

    def __str__(self) -> str:
        return (
            f"{self.holder} {self.module_px:.1f}px/module rot {self.rotation_deg:.0f} "
            f"tilt {self.tilt_deg:.0f} {self.blur} glare {self.glare:.2f} "
            f"noise {self.noise:.1f} contrast {self.contrast}"
        )


@dataclass(frozen=True)
class GateFrame:
    frame: Frame
    payload: bytes | None  # None: no code in view
    conditions: Conditions | None
    corners: tuple[tuple[float, float], ...] = ()  # the code's outline in the frame (x, y)


@dataclass(frozen=True)
class Difficulty:
    module_px: tuple[float, float]
    tilt_deg: tuple[float, float]
    gauss_blur: tuple[float, float]  # sigma in camera pixels
    motion_px: tuple[int, int]
    glare: tuple[float, float]
    noise: tuple[float, float]
    contrast: tuple[int, int]


HARD = Difficulty(
    module_px=(2.5, 4.0),
    tilt_deg=(15.0, 45.0),
    gauss_blur=(0.7, 1.3),
    motion_px=(3, 5),
    glare=(0.3, 0.75),
    noise=(4.0, 10.0),
    contrast=(60, 140),
)
EASY = Difficulty(
    module_px=(4.0, 8.0),
    tilt_deg=(0.0, 20.0),
    gauss_blur=(0.3, 0.7),
    motion_px=(1, 2),
    glare=(0.0, 0.25),
    noise=(2.0, 6.0),
    contrast=(120, 200),
)


def payloads() -> list[bytes]:
    """CCCD payloads: 7-field and 6-field cards of the sample people (UTF-8 Vietnamese)."""
    cards = sample_cards()
    return [card.payload() for card in cards] + [card.payload(six_field=True) for card in cards]


def hard_set(count: int = 60, seed: int = 4) -> list[GateFrame]:
    return _frame_set(HARD, count, seed)


def easy_set(count: int = 60, seed: int = 8) -> list[GateFrame]:
    return _frame_set(EASY, count, seed)


def empty_set(count: int = 60, seed: int = 15) -> list[GateFrame]:
    """The room with no code in view: background, light and sensor noise only."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        scene = _room(rng)
        noise = float(rng.uniform(4.0, 10.0))
        frames.append(GateFrame(_finish(scene, noise, rng), None, None))
    return frames


def _frame_set(difficulty: Difficulty, count: int, seed: int) -> list[GateFrame]:
    rng = np.random.default_rng(seed)
    options = payloads()
    return [gate_frame(options[index % len(options)], difficulty, rng) for index in range(count)]


def gate_frame(payload: bytes, difficulty: Difficulty, rng: np.random.Generator) -> GateFrame:
    """One frame showing `payload` on a phone or card under conditions drawn from `difficulty`."""
    holder = "phone" if rng.random() < 0.5 else "card"
    contrast = int(rng.integers(*difficulty.contrast, endpoint=True))
    modules = code_modules(payload)
    source, code_corners, module_src = _holder_image(holder, modules, contrast, rng)
    module_px = float(rng.uniform(*difficulty.module_px))
    pose = _Pose(
        rotation=float(rng.uniform(0.0, 360.0)),
        tilt=float(rng.uniform(*difficulty.tilt_deg)),
        axis=float(rng.uniform(0, math.pi)),
        centre=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.35, 0.65))),
    )
    # Foreshortening shrinks the code: rescale until its mean module is the size drawn.
    scale = module_px / module_src
    for _ in range(3):
        homography = _placement(source.shape, scale, pose)
        scale *= module_px / _module_px_after(homography, code_corners, modules.shape[0])
    homography = _in_view(_placement(source.shape, scale, pose), code_corners, module_src)
    scene = _room(rng)
    _paste(scene, source, homography, 1.0 / scale)
    placed = cv2.perspectiveTransform(code_corners.reshape(1, 4, 2), homography).reshape(4, 2)
    measured = _module_px_after(homography, code_corners, modules.shape[0])
    _shade(scene, rng)
    glare = 0.0
    if holder == "phone" or rng.random() < 0.3:  # a card's laminate shines too, less often
        glare = float(rng.uniform(*difficulty.glare))
        _glare(scene, homography, code_corners, glare, rng)
    blur = _blur(scene, difficulty, rng)
    noise = float(rng.uniform(*difficulty.noise))
    conditions = Conditions(
        holder, measured, pose.rotation, pose.tilt, blur, glare, noise, contrast
    )
    outline = tuple((float(x), float(y)) for x, y in placed)
    return GateFrame(_finish(scene, noise, rng), payload, conditions, outline)


def _holder_image(
    holder: str, modules: Frame, contrast: int, rng: np.random.Generator
) -> tuple[FloatImage, npt.NDArray[np.float64], int]:
    """The phone or card as a flat image, the code's corners on it, and pixels per module."""
    module_src = 8
    code = np.repeat(np.repeat(modules, module_src, 0), module_src, 1).astype(np.float32)
    side = code.shape[0]
    light = float(rng.uniform(200, 245)) if holder == "phone" else float(rng.uniform(170, 215))
    dark = max(0.0, light - contrast)
    code = dark + (code / 255.0) * (light - dark)
    if holder == "phone":
        height, width = int(side * 2.0), int(side * 1.15)
        image = np.full((height, width), float(rng.uniform(10, 40)), np.float32)  # bezel
        margin = int(side * 0.06)
        image[margin : height - margin, margin : width - margin] = light
        top, left = int(height * 0.3), (width - side) // 2
    else:
        height, width = int(side * 1.05), int(side * 1.6)
        image = np.full((height, width), light, np.float32)
        top, left = (height - side) // 2, int(width - side - side * 0.03)
        _print_text_lines(image, int(side * 0.55), dark, rng)
    image[top : top + side, left : left + side] = code
    corners = np.array(
        [[left, top], [left + side, top], [left + side, top + side], [left, top + side]],
        dtype=np.float64,
    )
    return image, corners, module_src


def _print_text_lines(card: FloatImage, width: int, ink: float, rng: np.random.Generator) -> None:
    """Rows of word-like dark blocks: a card's printed name and address."""
    height = card.shape[0]
    row, line = int(height * 0.12), max(6, height // 18)
    while row + line < height * 0.9:
        column = int(card.shape[1] * 0.04)
        while column < width:
            word = int(rng.integers(line, line * 4))
            card[row : row + line, column : min(column + word, width)] = ink + 40
            column += word + line // 2
        row += line * 2


@dataclass(frozen=True)
class _Pose:
    rotation: float  # degrees, in the image plane
    tilt: float  # degrees, away from the camera
    axis: float  # radians: the in-plane axis the holder is tilted about
    centre: tuple[float, float]  # where the holder's middle lands, as fractions of the frame


def _placement(shape: tuple[int, ...], scale: float, pose: _Pose) -> npt.NDArray[np.float64]:
    """A homography that shrinks, turns and tilts the holder image into the frame."""
    height, width = shape[0], shape[1]
    centred = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]], dtype=np.float64)
    turn = math.radians(pose.rotation)
    rotate = np.array(
        [[math.cos(turn), -math.sin(turn), 0], [math.sin(turn), math.cos(turn), 0], [0, 0, 1]]
    )
    # A pinhole view of the plane turned by `tilt` about `axis`, the camera about 1000 frame
    # pixels (one focal length) away.
    tilt = math.radians(pose.tilt)
    along = np.array(
        [
            [math.cos(pose.axis), math.sin(pose.axis), 0],
            [-math.sin(pose.axis), math.cos(pose.axis), 0],
            [0, 0, 1],
        ]
    )
    lean = math.sin(tilt) * scale / 1000.0
    lean_matrix = np.array([[math.cos(tilt), 0, 0], [0, 1, 0], [lean, 0, 1]])
    frame_w, frame_h = FRAME_SIZE
    place = np.array(
        [[scale, 0, pose.centre[0] * frame_w], [0, scale, pose.centre[1] * frame_h], [0, 0, 1]]
    )
    homography: npt.NDArray[np.float64] = (
        place @ rotate @ np.linalg.inv(along) @ lean_matrix @ along @ centred
    )
    return homography / homography[2, 2]


def _in_view(
    homography: npt.NDArray[np.float64], corners: npt.NDArray[np.float64], module_src: int
) -> npt.NDArray[np.float64]:
    """The homography moved just enough that the symbol (not its quiet zone) is in the frame:
    a visitor holds the code in view, though its margin may be cut by the frame's edge."""
    inset = 4 * module_src  # code_modules' quiet zone
    symbol = corners + np.array(
        [[inset, inset], [-inset, inset], [-inset, -inset], [inset, -inset]]
    )
    placed = cv2.perspectiveTransform(symbol.reshape(1, 4, 2), homography).reshape(4, 2)
    width, height = FRAME_SIZE
    low, high = placed.min(axis=0), placed.max(axis=0)
    shift_x = max(0.0, 2 - low[0]) - max(0.0, high[0] - (width - 3))
    shift_y = max(0.0, 2 - low[1]) - max(0.0, high[1] - (height - 3))
    move = np.array([[1, 0, shift_x], [0, 1, shift_y], [0, 0, 1]], dtype=np.float64)
    moved: npt.NDArray[np.float64] = move @ homography
    return moved


def _paste(
    scene: FloatImage, source: FloatImage, homography: npt.NDArray[np.float64], shrink: float
) -> None:
    # Blur before shrinking so that the warp averages modules like a lens, not aliases them.
    smoothed = cv2.GaussianBlur(source, (0, 0), max(0.5, 0.45 * shrink))
    size = FRAME_SIZE
    warped = cv2.warpPerspective(smoothed, homography, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones_like(source), homography, size, flags=cv2.INTER_LINEAR)
    scene *= 1.0 - mask
    scene += warped * mask


def _module_px_after(
    homography: npt.NDArray[np.float64], corners: npt.NDArray[np.float64], modules: int
) -> float:
    """Mean side of the code in the frame, in pixels per module (border modules included)."""
    placed = cv2.perspectiveTransform(corners.reshape(1, 4, 2), homography).reshape(4, 2)
    sides = np.linalg.norm(placed - np.roll(placed, -1, axis=0), axis=1)
    return float(sides.mean() / modules)


def _room(rng: np.random.Generator) -> FloatImage:
    """A background: a light gradient with a few large, soft-edged objects (door, wall, coat)."""
    width, height = FRAME_SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = float(rng.uniform(70, 160))
    slope_x, slope_y = rng.uniform(-0.05, 0.05, 2)
    scene = (base + slope_x * (xs - width / 2) + slope_y * (ys - height / 2)).astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(80, 500)), int(rng.integers(80, 500))
        scene[y0 : y0 + h, x0 : x0 + w] = float(rng.uniform(30, 220))
    return cv2.GaussianBlur(scene, (0, 0), 3.0)


def _shade(scene: FloatImage, rng: np.random.Generator) -> None:
    """Uneven light: a broad multiplicative gradient (0.6 .. 1.1)."""
    width, height = FRAME_SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = float(rng.uniform(0, 2 * math.pi))
    ramp = (xs * math.cos(direction) + ys * math.sin(direction)) / max(width, height)
    low = float(rng.uniform(0.6, 0.9))
    scene *= low + (1.1 - low) * (ramp - ramp.min()) / (ramp.max() - ramp.min())


def _glare(
    scene: FloatImage,
    homography: npt.NDArray[np.float64],
    corners: npt.NDArray[np.float64],
    strength: float,
    rng: np.random.Generator,
) -> None:
    """A soft specular highlight over part of the code: blends pixels toward white."""
    placed = cv2.perspectiveTransform(corners.reshape(1, 4, 2), homography).reshape(4, 2)
    centre = placed.mean(axis=0)
    size = float(np.linalg.norm(placed[0] - placed[2]))
    spot = centre + rng.uniform(-0.35, 0.35, 2) * size
    radius_x, radius_y = size * rng.uniform(0.15, 0.35, 2)
    width, height = FRAME_SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    distance = ((xs - spot[0]) / radius_x) ** 2 + ((ys - spot[1]) / radius_y) ** 2
    weight = strength * np.exp(-distance).astype(np.float32)
    scene *= 1.0 - weight
    scene += 255.0 * weight


def _blur(scene: FloatImage, difficulty: Difficulty, rng: np.random.Generator) -> str:
    if rng.random() < 0.7:
        sigma = float(rng.uniform(*difficulty.gauss_blur))
        cv2.GaussianBlur(scene, (0, 0), sigma, dst=scene)
        return f"gauss {sigma:.1f}"
    length = int(rng.integers(*difficulty.motion_px, endpoint=True))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    angle = float(rng.uniform(0, 180))
    turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    turned = np.asarray(cv2.warpAffine(kernel, turn, (length, length)), np.float32)
    turned /= max(float(turned.sum()), 1e-6)
    cv2.filter2D(scene, -1, turned, dst=scene)
    return f"motion {length}px"


def _finish(scene: FloatImage, noise: float, rng: np.random.Generator) -> Frame:
    noisy = scene + rng.normal(0.0, noise, scene.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_set(folder: Path, frames: Sequence[GateFrame]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, item in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:03d}.png"), item.frame)
        (folder / f"{index:03d}.txt").write_text(f"{item.conditions}\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description="Write generated gate frames as PNGs.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", choices=("hard", "easy", "empty"), default="hard")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    make = {"hard": hard_set, "easy": easy_set, "empty": empty_set}[args.set]
    write_set(args.out, make(args.count))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
