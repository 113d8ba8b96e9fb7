"""Small RGB pictures drawn with numpy, for `render_mode="rgb_array"` without OpenGL.

Coordinates are pixels, (column, row) from the top-left corner; shapes are clipped to the image.
"""

from __future__ import annotations

import numpy as np

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
LIGHT_GRAY: Color = (225, 225, 225)
GRAY: Color = (150, 150, 150)
BLUE: Color = (31, 119, 180)
GREEN: Color = (44, 160, 44)
RED: Color = (214, 39, 40)
ORANGE: Color = (255, 127, 14)


def blank(height: int, width: int, color: Color = WHITE) -> np.ndarray:
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = color
    return image


def fill_rect(image: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: Color) -> None:
    """Fill the pixels with x0 <= column < x1 and y0 <= row < y1."""
    height, width = image.shape[:2]
    c0, c1 = max(int(round(min(x0, x1))), 0), min(int(round(max(x0, x1))), width)
    r0, r1 = max(int(round(min(y0, y1))), 0), min(int(round(max(y0, y1))), height)
    if c0 < c1 and r0 < r1:
        image[r0:r1, c0:c1] = color


def disk(image: np.ndarray, x: float, y: float, radius: float, color: Color) -> None:
    height, width = image.shape[:2]
    r0, r1 = max(int(y - radius), 0), min(int(y + radius) + 2, height)
    c0, c1 = max(int(x - radius), 0), min(int(x + radius) + 2, width)
    if r0 >= r1 or c0 >= c1:
        return
    rows, cols = np.ogrid[r0:r1, c0:c1]
    inside = (rows - y) ** 2 + (cols - x) ** 2 <= radius**2
    image[r0:r1, c0:c1][inside] = color


def polyline(image: np.ndarray, points: np.ndarray, color: Color, width: float = 1.5) -> None:
    """Segments through `points` ([N, 2] pixel coordinates), drawn as dense dots."""
    points = np.asarray(points, dtype=np.float64)
    for start, end in zip(points[:-1], points[1:], strict=True):
        count = max(int(np.abs(end - start).max()) + 1, 2)
        for x, y in np.linspace(start, end, count):
            disk(image, x, y, width, color)
