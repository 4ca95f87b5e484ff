"""Video-to-video references.

Archive convention: a v2v sample is a target and its reference in the same folder, the reference
named after the target with `_ref` before the extension (any supported extension, any letter
case), and the caption named after the target:

    clips/clip01.mp4      the target: what the LoRA learns to produce
    clips/clip01_ref.mp4  the reference (condition) it is produced from
    clips/clip01.txt      the caption

Both are fitted identically: the same source window and sample times, the same bucket (the
target's), the same resize-to-fill and centre crop. The same works for stills (`a.png` +
`a_ref.png`). Outside v2v, `_ref` files are ordinary samples.

Beyond the hosted service, `reference_transform` derives a reference from each target that has
none: `canny` (white edges on black), `grayscale`, or `blur` (Gaussian, sigma = longer side / 96).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

REF_SUFFIX = "_ref"
CONVENTION = (
    "name each reference after its target with _ref before the extension, in the same folder "
    "(clips/clip01.mp4 + clips/clip01_ref.mp4, caption in clips/clip01.txt)"
)


def canny(rgb: np.ndarray) -> np.ndarray:
    import cv2  # only workers that derive references need OpenCV

    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 100, 200)
    return np.ascontiguousarray(np.repeat(edges[:, :, None], 3, axis=2))


def grayscale(rgb: np.ndarray) -> np.ndarray:
    import cv2  # only workers that derive references need OpenCV

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def blur(rgb: np.ndarray) -> np.ndarray:
    import cv2  # only workers that derive references need OpenCV

    sigma = max(rgb.shape[:2]) / 96
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma, sigmaY=sigma)


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"canny": canny, "grayscale": grayscale, "blur": blur}


def transform(name: str) -> Callable[[np.ndarray], np.ndarray]:
    return TRANSFORMS[name]


def split_reference_name(stem: str) -> str | None:
    """The target stem a reference stem points to (`clip01_ref` -> `clip01`), or None."""
    if stem.lower().endswith(REF_SUFFIX) and len(stem) > len(REF_SUFFIX):
        return stem[: -len(REF_SUFFIX)]
    return None
