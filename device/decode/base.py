"""What every decoder shares: the frame type, the decoded code, the protocol and the errors.

A gate must keep a code's bytes untouched: a Vietnamese name read as "NguyÃ…n" or as Shift-JIS
mojibake is a broken entry. Every backend returns raw bytes; turning them into text is one rule
in one place (`DecodedCode.text`):

    ECI charset if the code names one, else UTF-8 if the bytes are valid UTF-8, else ISO-8859-1.

Never Shift-JIS guessing: by the QR standard byte mode is ISO-8859-1 unless an ECI header says
otherwise, and in practice ID cards and phone apps write UTF-8 without ECI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]


class DecoderError(RuntimeError):
    """The decoding library failed in a way a frame cannot explain."""


class DecoderUnavailable(DecoderError, ImportError):
    """The decoding library of the chosen backend is not installed or too old."""


@dataclass(frozen=True)
class DecodedCode:
    """One QR code's exact bytes, and the charset its ECI header names (None if none or unknown)."""

    data: bytes
    charset: str | None = None

    @property
    def text(self) -> str:
        """The code as text: ECI charset if known, else UTF-8 if valid, else ISO-8859-1."""
        if self.charset is not None:
            try:
                return self.data.decode(self.charset)
            except (LookupError, UnicodeDecodeError):
                pass  # a wrong ECI header is no reason to fail: fall back to the usual rule
        as_utf8 = utf8_text(self.data)
        return as_utf8 if as_utf8 is not None else self.data.decode("iso-8859-1")


def utf8_text(data: bytes) -> str | None:
    """The bytes as text if they are valid UTF-8, else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Decoder(Protocol):
    name: str

    def decode(self, frame: Frame) -> list[DecodedCode]:
        """Every QR code found in a 2-D grey frame; [] when there is none."""
        ...


@runtime_checkable
class SaysWhatItSaw(Protocol):
    """A decoder that can tell, after a frame, whether a code was likely in it and whether one
    it found could not be read (the ensemble): the read rate and the "show it again" light."""

    def code_likely_in_last(self) -> bool:
        """Whether the last frame decoded held a code: one read, a symbol found but not read,
        or a region dense with code-like edges."""
        ...

    def unreadable_in_last(self) -> bool:
        """Whether the last frame decoded held a symbol found but not read."""
        ...


def grey_pixels(frame: object) -> Frame | None:
    """Check a frame and return it as 2-D uint8, or None when it has no pixels.

    Integer frames whose values fit 0..255 are converted; colour, float and other frames are
    refused with a ValueError that says what to do, since guessing their scale could hide a bug.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"a frame must be a numpy array, not {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim != 2:
        raise ValueError(
            f"expected a 2-D grey frame (height, width), got shape {frame.shape}; "
            "convert colour frames with cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)"
        )
    if frame.size == 0:
        return None
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.integer) and frame.min() >= 0 and frame.max() <= 255:
        return frame.astype(np.uint8)
    raise ValueError(f"expected a uint8 grey frame (0..255), got dtype {frame.dtype}")


def unique(codes: list[DecodedCode]) -> list[DecodedCode]:
    """The codes without repeats, in the order first found (two passes may read one code)."""
    return list(dict.fromkeys(codes))
