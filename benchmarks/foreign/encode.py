"""ffmpeg CLI invocations shared by the foreign renderer and the re-encoder."""

from __future__ import annotations

import shutil

from benchmarks.foreign.world import Format

TOOLS = ("ffmpeg", "sox")


def missing_tools(tools: tuple[str, ...] = TOOLS) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def require_tools(tools: tuple[str, ...] = TOOLS) -> None:
    missing = missing_tools(tools)
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found on PATH; install the Debian packages: "
            "apt-get install -y --no-install-recommends ffmpeg sox"
        )


def video_args(fmt: Format, crf: int) -> list[str]:
    """Encoder settings per codec: fast presets (a corpus, not an archive), one thread each
    because the renderer runs one clip per process."""
    codec = fmt.video_codec
    if codec == "libx264":
        args = ["-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    elif codec == "libvpx-vp9":
        args = ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "0", "-crf", str(crf + 8)]
        args += ["-pix_fmt", "yuv420p"]
    elif codec == "libvpx":
        args = ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k", "-pix_fmt", "yuv420p"]
    elif codec == "mpeg4":
        args = ["-q:v", str(max(2, crf // 5)), "-pix_fmt", "yuv420p"]
    elif codec == "mjpeg":
        args = ["-q:v", str(max(2, crf // 6)), "-pix_fmt", "yuvj420p"]
    else:
        raise ValueError(f"no settings for video codec {codec!r}")
    return ["-c:v", codec, *args, "-threads", "1"]


def audio_args(fmt: Format, sample_rate: int, channels: int) -> list[str]:
    codec = fmt.audio_codec
    extra = {
        "aac": ["-b:a", "96k"],
        "libopus": ["-b:a", "64k"],
        "libvorbis": ["-q:a", "4"],
        "libmp3lame": ["-b:a", "96k"],
    }.get(codec, [])
    return ["-c:a", codec, *extra, "-ar", str(sample_rate), "-ac", str(channels)]


def ffmpeg_base() -> list[str]:
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
