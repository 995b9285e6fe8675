"""Video keyframes: PyAV decodes a video by streaming and samples frames at a fixed rate.

`decode_video` hashes the file in chunks, probes the container, and returns a
`SourceResult` whose `frames` is a lazy `KeyframeStream`: frames are decoded one
at a time and only the sampled ones are converted to RGB, so a long video never
sits in memory whole.  A decode failure part-way (a truncated or corrupt file)
ends the stream, keeps the keyframes already yielded and sets `stream.error`; a
file PyAV cannot open at all is a `DecodeError` (an `ingest_errors` row).

Sampling: keyframe k is the first decoded frame whose presentation time is at
or after k / fps seconds; `keyframe_time_ms` is that frame's own time, so a
seek to it lands on the same picture.  A video's sampling (fps, max_frames) is
fixed at its first ingest: re-runs and re-embeds reuse it (`known_videos`), so
keyframe ids stay stable.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from . import objects
from .decode import DEFAULT_MAX_BYTES, ID_NAMESPACE, DecodedAsset, DecodeError, SourceResult, asset_id, check_size
from .sources import PLAIN, FileAccess, Source

HASH_CHUNK = 4 * 1024 * 1024
# Video files may be large, but are hashed in chunks and never read whole.
DEFAULT_MAX_VIDEO_BYTES = 64 * DEFAULT_MAX_BYTES


@dataclass
class VideoInfo:
    """One row of `catalog.videos`, filled in as the stream is read."""

    coactive_video_id: str
    path: str
    sha256: str
    size_bytes: int
    container: str
    codec: str
    width: int  # as displayed: a phone video's rotation is applied
    height: int
    duration_ms: int | None
    fps: float | None  # the video's own frame rate
    sample_fps: float
    max_frames: int | None
    rotation: int = 0  # degrees counterclockwise the display matrix turns coded frames
    frames_sampled: int = 0
    status: str = "partial"  # 'partial' while streaming, then 'complete' or 'error'
    error: str | None = None
    metadata: dict = field(default_factory=dict)


def video_id(dataset: str, path: str, sha256: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{dataset}\0{path}\0{sha256}\0video"))


def stream_digest(path, max_bytes: int = DEFAULT_MAX_VIDEO_BYTES, files: FileAccess = PLAIN) -> tuple[str, int]:
    h = hashlib.sha256()
    with files.open(path) as fh:
        size = check_size(path, max_bytes, objects.fstat(fh)[0])
        for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest(), size


def av_errors():
    import av

    return av.error.FFmpegError


# PyAV does not close a file object it was given: the file each open container reads, by id.
_FILES: dict[int, object] = {}


def _open(path, files: FileAccess = PLAIN):
    """An open container (close it with `_close`); through a checked FileAccess, or from object
    storage, PyAV reads the file object opened here (a buffered, seekable stream)."""
    import av

    path = objects.location(path)
    src = None
    try:
        src = str(path) if files is PLAIN and isinstance(path, Path) else files.open(path)
        container = av.open(src, metadata_errors="ignore")
    except av.error.FFmpegError as e:
        if src is not None and not isinstance(src, str):
            src.close()
        raise DecodeError(f"not a readable video: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(src, str):
        _FILES[id(container)] = src
    if not container.streams.video:
        _close(container)
        raise DecodeError("no video stream in file")
    return container


def _close(container) -> None:
    try:
        container.close()
    finally:
        fh = _FILES.pop(id(container), None)
        if fh is not None:
            fh.close()


def frame_rotation(frame) -> int:
    """Degrees counterclockwise the frame's display matrix turns it, to the nearest quarter."""
    return int(round(frame.rotation / 90.0)) * 90 % 360


def probe(path: Path, files: FileAccess = PLAIN) -> dict:
    """Container facts without decoding: codec, size, duration, frame rate."""
    container = _open(path, files)
    try:
        st = container.streams.video[0]
        cc = st.codec_context
        rate = st.average_rate or st.guessed_rate
        # Each estimate can be cut short by a truncated file (an AVI's stream
        # duration comes from its index), but the header's frame count survives:
        # the longest estimate is the duration the file claims.
        estimates = []
        if st.duration is not None and st.time_base is not None:
            estimates.append(float(st.duration * st.time_base) * 1000)
        if container.duration is not None:
            estimates.append(container.duration / 1000)  # container.duration is in µs
        if st.frames and rate:
            estimates.append(st.frames * 1000 / float(rate))
        duration_ms = int(round(max(estimates))) if estimates else None
        width, height = int(cc.width or st.width or 0), int(cc.height or st.height or 0)
        # Phones store portrait video as landscape frames plus a display matrix;
        # the first frame carries it.
        rotation = 0
        try:
            first = next(container.decode(st), None)
            rotation = frame_rotation(first) if first is not None else 0
        except av_errors() as e:
            raise DecodeError(f"not a readable video: {getattr(e, 'strerror', None) or e}") from None
        if rotation in (90, 270):
            width, height = height, width
        return {
            "container": container.format.name.split(",")[0],
            "codec": cc.name,
            "width": width,
            "height": height,
            "duration_ms": duration_ms,
            "fps": float(rate) if rate else None,
            "rotation": rotation,
        }
    finally:
        _close(container)


def frame_size(width: int, height: int, target: int | None, analysis_size: int | None) -> tuple[int, int]:
    """The size keyframes are converted to: short side `target` for the encoder, or
    long side `analysis_size` when analyzers need detail; never larger than the video."""
    if analysis_size:
        scale = min(1.0, analysis_size / max(width, height))
    elif target:
        scale = min(1.0, target / min(width, height))
    else:
        scale = 1.0
    w = max(2, int(round(width * scale)))
    h = max(2, int(round(height * scale)))
    return w - w % 2, h - h % 2


class KeyframeStream:
    """Iterates the sampled keyframes of one video as `DecodedAsset`s, decoding as it goes.

    Frames whose id is in `skip_ids` (already stored), or not in `only_ids` when
    given, still count toward the sampling but are not converted or yielded.
    After iteration `info.frames_sampled`, `info.status` and `error` are final.
    """

    def __init__(self, source: Source, dataset: str, info: VideoInfo, mtime: datetime,
                 target: int | None, analysis_size: int | None,
                 skip_ids=frozenset(), only_ids=None, files: FileAccess = PLAIN):
        self.source, self.dataset, self.info, self.mtime = source, dataset, info, mtime
        self.files = files
        w, h = frame_size(info.width, info.height, target, analysis_size)
        # converted in the coded orientation, then turned upright
        self.size = (h, w) if info.rotation in (90, 270) else (w, h)
        self.skip_ids, self.only_ids = skip_ids, only_ids
        self.error: str | None = None
        self.decoded_until_ms: float | None = None

    def __iter__(self) -> Iterator[DecodedAsset]:
        import av

        info = self.info
        path = objects.location(info.path)
        interval = 1000.0 / info.sample_fps
        native = 1000.0 / info.fps if info.fps else 40.0
        next_t, index, n = 0.0, 0, 0
        stopped_early = False
        try:
            container = _open(path, self.files)
        except DecodeError as e:
            self._finish(str(e))
            return
        try:
            st = container.streams.video[0]
            st.thread_type = "AUTO"  # ffmpeg's own frame threads; the GIL is released while decoding
            start = float(st.start_time * st.time_base) * 1000 if st.start_time is not None else 0.0
            try:
                for frame in container.decode(st):
                    t = float(frame.time) * 1000 - start if frame.time is not None else n * native
                    n += 1
                    self.decoded_until_ms = t
                    if t < next_t - 0.5:
                        continue
                    if info.max_frames is not None and index >= info.max_frames:
                        stopped_early = True
                        break
                    aid = asset_id(self.dataset, info.path, info.sha256, index)
                    time_ms = max(0, int(round(t)))
                    wanted = aid not in self.skip_ids and (self.only_ids is None or aid in self.only_ids)
                    image = None
                    if wanted:
                        w, h = self.size
                        image = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_image()
                        if info.rotation:
                            image = image.rotate(info.rotation, expand=True)
                    current = index
                    index += 1
                    info.frames_sampled = index
                    next_t += interval
                    while next_t <= t + 0.5:  # a source slower than the sampling rate
                        next_t += interval
                    if wanted:
                        yield DecodedAsset(
                            aid, info.path, "keyframe", info.codec, info.width, info.height,
                            info.size_bytes, info.sha256, self.mtime, image, dict(self.source.metadata),
                            coactive_video_id=info.coactive_video_id, keyframe_index=current,
                            keyframe_time_ms=time_ms,
                        )
            except av.error.FFmpegError as e:
                at = f"{self.decoded_until_ms:.0f} ms" if self.decoded_until_ms is not None else "the start"
                self._finish(f"video decoding stopped at {at}: {getattr(e, 'strerror', None) or e}")
                return
        finally:
            _close(container)
        if index == 0:
            self._finish("no decodable frames in video")
        elif not stopped_early and info.duration_ms and self.decoded_until_ms is not None:
            missing = info.duration_ms - (self.decoded_until_ms + native)
            if missing > max(3 * native, 250.0):
                self._finish(
                    f"truncated or corrupt video: frames end at {self.decoded_until_ms:.0f} ms "
                    f"of {info.duration_ms} ms; {index} keyframes kept"
                )
                return
        self._finish(None)

    def _finish(self, error: str | None) -> None:
        self.error = error
        self.info.error = error
        self.info.status = "error" if error else "complete"


def decode_video(
    source: Source,
    dataset: str,
    known_ids=frozenset(),
    target: int | None = None,
    fps: float = 1.0,
    max_frames: int | None = None,
    analysis_size: int | None = None,
    known_videos: dict | None = None,
    only_ids=None,
    files: FileAccess = PLAIN,
) -> SourceResult:
    """Hash and probe one video; return a result whose `frames` streams its keyframes.

    `known_videos` maps path -> {"sha256", "sample_fps", "max_frames", "complete"}
    from the catalog: an unchanged video keeps its first sampling, and a complete
    one is skipped without decoding.  Raises `DecodeError` for an unreadable file.
    """
    if not fps or fps <= 0:
        raise DecodeError(f"invalid keyframe rate fps={fps}: must be > 0")
    if max_frames is not None and max_frames < 1:
        raise DecodeError(f"invalid max_frames={max_frames}: must be >= 1")
    path = source.path
    res = SourceResult(source)
    digest, size = stream_digest(path, files=files)
    rec = (known_videos or {}).get(str(path))
    if rec and rec.get("sha256") == digest:
        fps, max_frames = rec["sample_fps"], rec["max_frames"]
        if rec.get("complete") and only_ids is None:
            res.skipped = True
            return res
    facts = probe(path, files)
    if not facts["width"] or not facts["height"]:
        raise DecodeError("video stream has no frame size")
    info = VideoInfo(
        video_id(dataset, str(path), digest), str(path), digest, size,
        sample_fps=float(fps), max_frames=max_frames, metadata=dict(source.metadata), **facts,
    )
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(tzinfo=None)
    res.video = info
    res.frames = KeyframeStream(source, dataset, info, mtime, target, analysis_size, known_ids, only_ids,
                                files)
    return res


def read_keyframes(source: Source, dataset: str, **options) -> tuple[list[DecodedAsset], SourceResult]:
    """Decode a (short) video's keyframes into a list: for tests and small tools.

    The pipeline never calls this; it consumes `frames` lazily.
    """
    res = decode_video(source, dataset, **options)
    frames = list(res.frames) if res.frames is not None else []
    if res.frames is not None and res.frames.error:
        res.error = res.frames.error
    return frames, res


def frame_at(path, time_ms: int):
    """The upright image of the keyframe `KeyframeStream` stored at `time_ms` (for thumbnails).

    Same times (from the stream's start) and the same rotation as ingest, at full
    size; it seeks, so a late keyframe does not decode the video from the start.
    Raises `DecodeError` for a file that is no longer a readable video.
    """
    import av

    container = _open(objects.location(path))
    try:
        st = container.streams.video[0]
        start = float(st.start_time * st.time_base) if st.start_time is not None and st.time_base else 0.0
        t = start + (time_ms or 0) / 1000.0
        frame = None
        try:
            if st.time_base:
                container.seek(int(t / st.time_base), stream=st, backward=True)
            for f in container.decode(st):
                frame = f
                if f.time is None or f.time >= t - 1e-3:
                    break
        except av.error.FFmpegError as e:
            if frame is None:
                raise DecodeError(f"not a readable video: {getattr(e, 'strerror', None) or e}") from None
        if frame is None:
            raise DecodeError(f"no decodable frame at {time_ms} ms")
        image = frame.to_image()
        rotation = frame_rotation(frame)
        return image.rotate(rotation, expand=True) if rotation else image
    finally:
        _close(container)
