"""Tiny image_folder files for the reader tests (tests/data/test_image_folder.py) and the contract suite."""

import numpy as np
from PIL import Image


def write(folder):
    (folder / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(np.full((40, 60, 3), 10, np.uint8)).save(folder / "b.png")
    Image.fromarray(np.full((50, 30, 3), 200, np.uint8)).save(folder / "sub" / "a.JPG")
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(folder / "sub" / "deeper" / "c.jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder
