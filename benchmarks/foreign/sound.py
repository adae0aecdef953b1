"""The sound: every source and the ambience synthesised by the sox CLI, then mixed by sox.

Each event is its own `sox -n ... synth ... pad T` pipe (sox's "|command" inputs), so its sound
starts exactly at the event time; the inputs are mixed with `sox -m`. Pitch follows size (small
sources sit in a higher register), every frequency is kept under 45% of the sample rate so nothing
aliases at 8 kHz.
"""

from __future__ import annotations

import random
import shlex
import subprocess
from pathlib import Path

from benchmarks.foreign.world import ClipPlan, Source


class ToolError(RuntimeError):
    """An external tool (sox, ffmpeg) failed; the message carries its command and stderr."""


def run_tool(cmd: list[str], *, stdin: bytes | None = None, timeout: float = 120.0) -> None:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip()[-800:]
        raise ToolError(f"{cmd[0]} exited {proc.returncode}: {shlex.join(cmd)[:400]}\n{tail}")


def _hz(f: float, rate: int) -> str:
    return f"{min(f, 0.45 * rate):.1f}"


def _event_effects(s: Source, rate: int, rng: random.Random) -> tuple[int, list[str]]:
    """Channels to synthesise and sox `synth` + effects for one event of `s` (a fresh variation
    each time); only the bell needs several channels, one per partial, folded to one."""
    high = s.size == "small"
    p = s.timbre * rng.uniform(0.97, 1.03)
    if s.kind == "ball":
        length = rng.uniform(0.09, 0.14)
        cutoff = (900 if high else 300) * p
        return 1, [
            "synth",
            f"{length:.3f}",
            "brownnoise",
            "lowpass",
            _hz(cutoff, rate),
            "fade",
            "q",
            "0.002",
            f"{length:.3f}",
            f"{length * 0.8:.3f}",
            "gain",
            "6",
        ]
    if s.kind == "bell":
        f0 = (900 if high else 330) * p
        partials = [f0 * k for k in (1.0, 2.32, 4.17) if f0 * k < 0.45 * rate]
        length = rng.uniform(1.0, 1.5)
        # A chord of sines, one per channel, folded to one channel: sox's way to add partials.
        return len(partials), [
            "synth",
            f"{length:.3f}",
            *(x for f in partials for x in ("sine", _hz(f, rate))),
            "remix",
            "-",
            "fade",
            "l",
            "0.003",
            f"{length:.3f}",
            f"{length - 0.01:.3f}",
            "gain",
            "-3",
        ]
    if s.kind == "drum":
        start, end = (330 * p, 120 * p) if high else (150 * p, 42 * p)
        length = rng.uniform(0.3, 0.4)
        return 1, [
            "synth",
            f"{length:.3f}",
            "sine",
            f"{_hz(start, rate)}/{_hz(end, rate)}",
            "fade",
            "q",
            "0.003",
            f"{length:.3f}",
            f"{length * 0.9:.3f}",
        ]
    if s.kind == "bird":
        start, end = (2100 * p, 3500 * p) if high else (850 * p, 1700 * p)
        length = rng.uniform(0.07, 0.12)
        return 1, [
            "synth",
            f"{length:.3f}",
            "sine",
            f"{_hz(start, rate)}/{_hz(end, rate)}",
            "fade",
            "h",
            "0.01",
            f"{length:.3f}",
            "0.03",
            "gain",
            "-2",
        ]
    if s.kind == "clock":
        f = (3200 if high else 1300) * p
        length = rng.uniform(0.008, 0.014)
        return 1, [
            "synth",
            f"{length:.4f}",
            "sine",
            _hz(f, rate),
            "fade",
            "q",
            "0.001",
            f"{length:.4f}",
            f"{length / 2:.4f}",
        ]
    raise ValueError(f"{s.kind} has no discrete events")


def _continuous_effects(s: Source, duration: float, rate: int) -> list[str]:
    if s.kind == "engine":
        f = (150 if s.size == "small" else 58) * s.timbre
        # A sine at the vibrato rate, then a sawtooth whose frequency it modulates.
        loud = "-4" if s.tempo == "fast" else "-14"
        return [
            "synth",
            f"{duration}",
            "sine",
            "5.5",
            "synth",
            f"{duration}",
            "sawtooth",
            "fmod",
            _hz(f, rate),
            "lowpass",
            _hz(f * 8, rate),
            "gain",
            loud,
        ]
    if s.kind == "siren":
        f = (820 if s.size == "small" else 360) * s.timbre
        cents = 450
        bends, last = [], 0.0
        for k, t in enumerate(s.events):
            # bend's delays count from the end of the previous bend; each bend takes 20 ms.
            sign = cents if k % 2 == 0 else -cents
            bends.append(f"{max(0.0, t - last):.4f},{sign},0.02")
            last = max(t, last) + 0.02
        return [
            "synth",
            f"{duration}",
            "square",
            _hz(f, rate),
            "lowpass",
            _hz(f * 5, rate),
            "gain",
            "-12",
            *(["bend", *bends] if bends else []),
        ]
    raise ValueError(f"{s.kind} is not continuous")


def _ambience_effects(ambience: str, duration: float, rate: int) -> list[str]:
    if ambience == "rain":
        return [
            "synth",
            f"{duration}",
            "pinknoise",
            "highpass",
            _hz(1200, rate),
            "tremolo",
            "11",
            "35",
            "gain",
            "-16",
        ]
    if ambience == "wind":
        return [
            "synth",
            f"{duration}",
            "brownnoise",
            "lowpass",
            "450",
            "tremolo",
            "0.3",
            "80",
            "gain",
            "-6",
        ]
    # Quiet: a room's faint hiss, far under every source.
    return ["synth", f"{duration}", "whitenoise", "gain", "-58"]


def _sox_in(rate: int, channels: int) -> list[str]:
    return ["sox", "-R", "-V1", "-r", str(rate), "-c", str(channels), "-n", "-p"]


def _source_track(s: Source, plan: ClipPlan, rng: random.Random, out: Path) -> None:
    rate, dur = plan.sample_rate, plan.duration_s
    if s.kind in ("engine", "siren"):
        run_tool([*_sox_in(rate, 1)[:-1], "-b", "16", str(out), *_continuous_effects(s, dur, rate)])
        return
    inputs: list[str] = ["-v", "1", "|" + shlex.join([*_sox_in(rate, 1), "trim", "0", f"{dur}"])]
    for t in s.events:
        chans, effects = _event_effects(s, rate, rng)
        pipe = shlex.join([*_sox_in(rate, chans), *effects, "pad", f"{t:.4f}"])
        inputs += ["-v", "1", "|" + pipe]
    run_tool(["sox", "-R", "-V1", "-G", "-m", *inputs, "-b", "16", str(out), "trim", "0", f"{dur}"])


def _stereo(s: Source, mono: Path, out: Path, duration: float) -> None:
    """Pan by direction: a left-to-right source fades from the left channel into the right."""
    if s.direction == "still":
        run_tool(["sox", "-V1", str(mono), str(out), "remix", "1", "1"])
        return
    fade_out = shlex.join(
        ["sox", "-V1", str(mono), "-p", "fade", "t", "0", f"{duration}", f"{duration}"]
    )
    fade_in = shlex.join(["sox", "-V1", str(mono), "-p", "fade", "t", f"{duration}"])
    left, right = (fade_out, fade_in) if s.direction == "left-to-right" else (fade_in, fade_out)
    run_tool(["sox", "-V1", "-M", "|" + left, "|" + right, str(out)])


def render_audio(plan: ClipPlan, work: Path) -> Path:
    """Write the clip's soundtrack as a WAV at its sample rate and channel count."""
    rng = random.Random(plan.caption_seed ^ 0x5A17)
    rate, dur, ch = plan.sample_rate, plan.duration_s, plan.channels
    parts: list[Path] = []
    for i, s in enumerate(plan.sources):
        if not s.audible:
            continue
        mono = work / f"src{i}.wav"
        _source_track(s, plan, rng, mono)
        if ch == 2:
            wide = work / f"src{i}-st.wav"
            _stereo(s, mono, wide, dur)
            mono = wide
        parts.append(mono)
    amb = work / "ambience.wav"
    run_tool(
        [
            *_sox_in(rate, ch)[:-1],
            "-b",
            "16",
            str(amb),
            *_ambience_effects(plan.ambience, dur, rate),
        ]
    )
    parts.append(amb)
    out = work / "mix.wav"
    room = ["reverb", str(plan.look.reverb)] if plan.look.reverb else []
    cmd = ["sox", "-V1", "-G", "-m", *(x for p in parts for x in ("-v", "1", str(p)))]
    cmd += ["-b", "16", "-c", str(ch), str(out), *room, "gain", "-n", "-1", "trim", "0", f"{dur}"]
    run_tool(cmd)
    return out
