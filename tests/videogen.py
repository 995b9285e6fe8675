"""Synthetic videos for tests and benchmarks, written with PyAV (no files shipped).

Each frame is a flat background colour that changes every second with a white
square moving across it; `shape_at` draws a second, distinct shape (a red
disc) during the chosen seconds so a concept can be learned from labelled frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = [(40, 90, 160), (30, 130, 130), (40, 140, 70), (90, 90, 90), (70, 50, 140)]  # no reds: the disc is red


def frame_array(i: int, rate: int, width: int, height: int, disc: bool) -> np.ndarray:
    sec = i // rate
    img = np.empty((height, width, 3), np.uint8)
    img[:] = COLOURS[sec % len(COLOURS)]
    s = max(8, height // 6)
    period = rate * 3 + 7  # out of step with whole seconds, so position says nothing about the label
    x = int((width - s) * (i % period) / period)
    y = height // 4
    img[y:y + s, x:x + s] = 255
    if disc:
        yy, xx = np.ogrid[:height, :width]
        cy, cx, r = int(height * 0.62), width // 2, height // 4
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (230, 20, 20)
    return img


def make_video(path: Path, seconds: float = 10, rate: int = 25, width: int = 320, height: int = 240,
               codec: str = "libx264", shape_at: set[int] | frozenset = frozenset(),
               faststart: bool = True) -> Path:
    """Write a video; `faststart` puts an MP4's index first, as streaming services do."""
    import av

    path = Path(path)
    options = {"movflags": "faststart"} if faststart and path.suffix.lower() in (".mp4", ".mov") else {}
    with av.open(str(path), "w", options=options) as out:
        st = out.add_stream(codec, rate=rate)
        st.width, st.height = width, height
        st.pix_fmt = "yuv420p"
        if codec == "libx264":
            st.options = {"preset": "ultrafast", "g": str(rate * 2)}
        for i in range(int(seconds * rate)):
            frame = av.VideoFrame.from_ndarray(frame_array(i, rate, width, height, (i // rate) in shape_at), format="rgb24")
            for packet in st.encode(frame):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)
    return path


def truncate_copy(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def rotate_mp4(src: Path, dst: Path) -> Path:
    """Copy an MP4 with its track matrix set to 'display turned 90° clockwise', as phones
    record portrait video (landscape frames plus a display matrix)."""
    import struct

    data = bytearray(Path(src).read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    # box header, version/flags, times, track id, reserved, duration, reserved, layer, group, volume, reserved
    off = i + 4 + 4 + (8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4) + 8 + 8
    height = struct.unpack(">I", data[off + 40: off + 44])[0]
    data[off: off + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, height, 0, 0x40000000)
    Path(dst).write_bytes(data)
    return Path(dst)
