"""Short videos: read, write, contact sheets, and clips made from still images by a simulated camera.

Videos are float32 arrays (T, H, W, 3) on [0, 1]. Inputs (:func:`read_video`): an animated
GIF, a folder of frames (``.png``/``.jpg``/``.jpeg``/``.bmp``/``.tif``, sorted by name), a
``.npy`` (T, H, W, 3) (or (T, H, W), grey; integers are divided by their dtype's maximum,
floats must be on [0, 1]) or a multi-page TIFF stack. Outputs (:func:`write_video`): GIF via
Pillow; MP4 only when ``imageio-ffmpeg`` is installed (otherwise an InputError says to use
.gif). :func:`contact_sheet` writes all frames side by side in a PNG.

:func:`camera_clip` simulates a camera pan over a still image: T crops of ``size`` x ``size``
whose top-left corner moves ``step`` pixels per frame along ``direction`` (dy, dx) from
``start``; :func:`satellite_clip` does this over the percentile-stretched (1 %, 99 %) true-colour
GT of a pan-sharpening scene.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.errors import InputError

FRAME_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".gif", ".mp4")


def _to_unit(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype.kind in "ui":
        a = a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    elif a.dtype.kind == "b":
        a = a.astype(np.float64)
    a = np.asarray(a, np.float32)
    if a.ndim == 3:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise InputError(f"{what}: expected frames (T, H, W, 3), got shape {a.shape}")
    a = a[..., :3] if a.shape[-1] != 1 else np.repeat(a, 3, axis=-1)
    if not np.isfinite(a).all():
        raise InputError(f"{what}: contains NaN or Inf")
    if a.min() < -1e-6 or a.max() > 1 + 1e-6:
        raise InputError(f"{what}: float frames must be on [0, 1], got [{a.min():.3g}, {a.max():.3g}]")
    return np.clip(a, 0.0, 1.0)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_video(path: str | os.PathLike[str]) -> np.ndarray:
    """A video (formats: module docstring) -> (T, H, W, 3) float32 on [0, 1]; InputError on bad input."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"video {p} not found")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in FRAME_EXTS)
        if not files:
            raise InputError(f"no frames ({', '.join(FRAME_EXTS)}) in folder {p}")
        frames = [_read_image(f) for f in files]
        if len({f.shape for f in frames}) != 1:
            raise InputError(f"the frames in {p} differ in size")
        return _to_unit(np.stack(frames), str(p))
    ext = p.suffix.lower()
    if ext == ".npy":
        return _to_unit(np.load(p, allow_pickle=False), p.name)
    if ext == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(p) as im:
            frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
        return _to_unit(np.stack(frames), p.name)
    if ext in (".tif", ".tiff"):
        import tifffile

        return _to_unit(np.asarray(tifffile.imread(p)), p.name)
    raise InputError(f"unsupported video {p.name}: use a .gif, a folder of frames, a .npy (T, H, W, 3) or a TIFF stack")


def _uint8(video: Any) -> np.ndarray:
    v = np.asarray(video, np.float64)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise InputError(f"video must be (T, H, W, 3), got shape {v.shape}")
    return np.round(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)


def check_video_out(path: str | os.PathLike[str]) -> Path:
    """An output video path: ``.gif`` or ``.mp4`` (the latter only with imageio-ffmpeg), in an existing folder."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in VIDEO_EXTS:
        raise InputError(f"unsupported video output {p.name}: use .gif (or .mp4 with imageio-ffmpeg installed)")
    if ext == ".mp4" and not mp4_available():
        raise InputError(f"cannot write {p.name}: MP4 needs the imageio-ffmpeg package, which is not installed; use .gif")
    if not p.absolute().parent.is_dir():
        raise InputError(f"the folder of {p} does not exist")
    return p


def mp4_available() -> bool:
    """Whether imageio-ffmpeg is importable (MP4 output)."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_video(path: str | os.PathLike[str], video: Any, fps: float = 8.0) -> Path:
    """Write (T, H, W, 3) on [0, 1] as an looping GIF (or MP4, module docstring) at ``fps`` frames/s."""
    p = check_video_out(path)
    frames = _uint8(video)
    if p.suffix.lower() == ".mp4":
        import imageio.v2 as imageio

        imageio.mimwrite(p, list(frames), fps=fps)
        return p
    from PIL import Image

    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(p, save_all=True, append_images=ims[1:], duration=int(round(1000.0 / fps)), loop=0)
    return p


def contact_sheet(path: str | os.PathLike[str], videos: Any, gap: int = 2, scale: int = 1) -> Path:
    """A PNG with the frames of one video (T, H, W, 3) in a row, or of several (R, T, H, W, 3) in rows,
    white ``gap`` pixels between them, each pixel repeated ``scale`` times."""
    from PIL import Image

    v = np.asarray(videos)
    v = v[None] if v.ndim == 4 else v
    if v.ndim != 5:
        raise InputError(f"contact sheet wants (T, H, W, 3) or (R, T, H, W, 3), got shape {v.shape}")
    rows, t, h, w, _ = v.shape
    s = max(int(scale), 1)
    sheet = np.full((rows * (h * s + gap) - gap, t * (w * s + gap) - gap, 3), 255, np.uint8)
    for r in range(rows):
        frames = _uint8(v[r])
        for i in range(t):
            f = np.repeat(np.repeat(frames[i], s, 0), s, 1)
            sheet[r * (h * s + gap) : r * (h * s + gap) + h * s, i * (w * s + gap) : i * (w * s + gap) + w * s] = f
    p = Path(path)
    Image.fromarray(sheet).save(p)
    return p


def camera_clip(image: Any, frames: int = 8, size: int = 64, step: int = 4, direction: tuple[float, float] = (0.5, 1.0),
                start: tuple[int, int] = (0, 0)) -> np.ndarray:  # fmt: skip
    """Crops of a still ``image`` (H, W, 3) on [0, 1] along a straight camera path -> (frames, size, size, 3).

    Frame i's top-left corner is ``start + round(i * step * direction / |direction|)`` (rows, cols);
    InputError when the path leaves the image.
    """
    img = np.asarray(image, np.float32)
    d = np.asarray(direction, np.float64)
    d = d / max(np.linalg.norm(d), 1e-12)
    out = []
    for i in range(int(frames)):
        y, x = (np.asarray(start) + np.round(i * step * d)).astype(int)
        if y < 0 or x < 0 or y + size > img.shape[0] or x + size > img.shape[1]:
            raise InputError(f"the camera path leaves the {img.shape[0]}x{img.shape[1]} image at frame {i}")
        out.append(img[y : y + size, x : x + size, :3])
    return np.stack(out)


def fit_frames(video: Any, frames: int, size: int) -> np.ndarray:
    """The first ``frames`` frames of (T, H, W, 3), centre-cropped to a square and resized (bicubic,
    Pillow) to ``size`` x ``size`` when needed -> (frames, size, size, 3) on [0, 1]."""
    from PIL import Image

    v = np.asarray(video, np.float32)
    if v.shape[0] < frames:
        raise InputError(f"the video has {v.shape[0]} frames; {frames} are needed (--frames)")
    v = v[: int(frames)]
    h, w = v.shape[1:3]
    s = min(h, w)
    v = v[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    if s == size:
        return v
    out = [np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in _uint8(v)]
    return np.stack(out).astype(np.float32) / 255.0


def true_colour(ms: Any, rgb: tuple[int, int, int], percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """(H, W, C) multispectral -> (H, W, 3) on [0, 1], each of the ``rgb`` bands stretched between its percentiles."""
    a = np.asarray(ms, np.float64)[..., list(rgb)]
    lo, hi = np.percentile(a, percentiles[0], axis=(0, 1)), np.percentile(a, percentiles[1], axis=(0, 1))
    return np.clip((a - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)


def satellite_clip(scene_path: str | os.PathLike[str], frames: int = 8, size: int = 64, step: int = 4, **kw: Any) -> np.ndarray:
    """A camera pan (:func:`camera_clip`) over the true-colour GT of a scene with a ground truth (e.g. ``rr/wv3_cdif.mat``)."""
    from pansharp_jax.data.io import load_scene

    scene = load_scene(scene_path)
    if not scene.has_gt:
        raise InputError(f"{scene.name} has no ground truth to make a clip from")
    return camera_clip(true_colour(scene.gt, scene.sensor.rgb), frames, size, step, **kw)


__all__ = ["read_video", "fit_frames", "write_video", "contact_sheet", "camera_clip", "satellite_clip", "true_colour", "check_video_out",
           "mp4_available", "FRAME_EXTS", "VIDEO_EXTS"]  # fmt: skip
