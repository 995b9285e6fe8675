"""`face_count`: frontal faces found by OpenCV's Haar cascade (shipped in opencv-python-headless 4.x).

Haar cascades are fast and need no network, at the cost of missing profiles and
small faces; the count is a signal for triage (e.g. "images with people"), not
identification.  OpenCV 5 dropped the cascades, hence the `<5` pin.
"""
from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa

from .base import Analyzer, package_version

MAX_SIDE = 1024


class FacesAnalyzer(Analyzer):
    name = "faces"
    schema = pa.schema([pa.field("face_count", pa.int32())])
    sql_types = {"face_count": "INTEGER"}

    def __init__(self):
        import cv2

        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cv2 = cv2
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade {path}")
        self.version = package_version("opencv-python-headless") + ":haarcascade_frontalface_default"
        # CascadeClassifier keeps scratch state: one caller at a time.
        self._lock = threading.Lock()

    def count(self, im) -> int:
        cv2 = self.cv2
        im = im.convert("L")
        scale = min(1.0, MAX_SIDE / max(im.size))
        if scale < 1.0:
            im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
        gray = cv2.equalizeHist(np.asarray(im, dtype=np.uint8))
        side = max(24, min(gray.shape) // 40)
        with self._lock:
            faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        return int(len(faces))

    def analyze(self, images):
        return [{"face_count": self.count(im)} for im in images]
