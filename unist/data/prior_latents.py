"""The latent time series of the in-context prior (`prior.py`): a random sum / product of components.

  periods  - 1-3 seasonal periods in steps: the clock's daily / weekly ones (in its phase) or random ones
  profiles - one non-sinusoidal period shape per latent (`PROFILE_SHAPES`), tiled over the series
  level    - linear / damped / piecewise-linear trends, random walks, level shifts
  noise    - white / AR(1) / AR(2), optionally heteroscedastic by seasonal phase or level
`_latents` combines them (additively, or multiplicatively with the level) into standardised rows; the
spatial mixing over locations and the output transforms are in `prior.py`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import lfilter

from .synthetic_common import _int, _loguniform, _noise, _pick, _standardize

if TYPE_CHECKING:  # annotations only (prior.py imports this module)
    from .prior import PriorConfig

PROFILE_SHAPES = ("fourier", "bumps", "sawtooth", "pulse", "smooth")


def _periods(rng: np.random.Generator, cfg: PriorConfig, t: int, interval: float, clocked: bool):
    """(periods, aligned): integer periods in steps, and whether each is a clock period (daily/weekly,
    phase tied to the timestamps). Without alignment the periods are random: no clock feature explains them."""
    if rng.random() >= cfg.p_seasonal:
        return [], []
    n, cap = _int(rng, cfg.num_periods), max(3, t // cfg.min_cycles)
    periods: list[int] = []
    if clocked and rng.random() < cfg.p_clock_periods:
        steps = [m / interval for m in (1440, 10080)]
        periods = [int(p) for p in steps if p == int(p) and 3 <= p <= cap][:n]
    aligned = [True] * len(periods)
    for _ in range(4 * n):
        if len(periods) >= n:
            break
        p = int(rng.choice(cfg.calendar_periods)) if rng.random() < cfg.p_calendar else \
            _int(rng, cfg.period_range, log=True)
        if p > cap:
            p = _int(rng, (min(cfg.period_range[0], cap), cap), log=True)
        if p not in periods:
            periods.append(p)
            aligned.append(False)
    return periods, aligned


def _profile(rng: np.random.Generator, p: int, rows: int, cfg: PriorConfig) -> tuple[np.ndarray, str]:
    """(rows, p) one period of a non-sinusoidal shape per latent row (zero mean, unit std), and its name.

    fourier: 1-6 random harmonics (fundamental always present); bumps: 1-3 peaks (rush hours);
    sawtooth: a ramp and a drop; pulse: on/off; smooth: low-passed random values."""
    shape = _pick(rng, PROFILE_SHAPES, cfg.shape_weights)
    ph = np.arange(p, dtype=np.float32) / p
    if shape == "fourier":
        h = np.arange(1, max(1, min(int(rng.integers(1, 7)), p // 2)) + 1)
        amp = rng.uniform(0, 1, (rows, len(h))) * h ** -rng.uniform(0, 1.5)
        amp[:, 0] = rng.uniform(0.5, 1.0, rows)
        phase = rng.uniform(0, 2 * np.pi, (rows, len(h)))
        ang = 2 * np.pi * h[:, None] * ph[None, :]
        prof = (amp * np.cos(phase)) @ np.cos(ang) - (amp * np.sin(phase)) @ np.sin(ang)
    elif shape == "bumps":
        m = int(rng.integers(1, 4))
        centre, height = rng.random((rows, m, 1)), rng.uniform(0.3, 1.0, (rows, m, 1))
        width = np.maximum(rng.uniform(0.01, 0.12, (rows, m, 1)), 0.6 / p)
        d = np.abs((ph - centre + 0.5) % 1.0 - 0.5)
        prof = (height * np.exp(-0.5 * (d / width) ** 2)).sum(1) * rng.choice([-1.0, 1.0])
    elif shape == "sawtooth":
        prof = ((ph + rng.random((rows, 1))) % 1.0) ** rng.uniform(0.5, 3.0) * rng.choice([-1.0, 1.0])
    elif shape == "pulse":
        on = rng.integers(1, p, (rows, 1))
        prof = ((np.arange(p) - rng.integers(0, p, (rows, 1))) % p < on).astype(np.float32)
    else:
        spec = np.fft.rfft(rng.standard_normal((rows, p)), axis=1)
        spec *= np.exp(-(np.arange(spec.shape[1]) / rng.uniform(1.0, p / 4 + 1.0)) ** 2)
        spec[:, 0] = 0
        spec[:, 1] += 0.5 * p * np.exp(1j * rng.uniform(0, 2 * np.pi, rows))     # keep the fundamental
        prof = np.fft.irfft(spec, n=p, axis=1)
    return _standardize(np.asarray(prof, np.float32), axis=1), shape


def _tile(prof: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
    """(rows, length): row r repeats prof[r] from phase start[r]."""
    rows, p = prof.shape
    rolled = prof[np.arange(rows)[:, None], (np.arange(p)[None, :] + start[:, None]) % p]
    return np.tile(rolled, (1, length // p + 1))[:, :length]


def _ar_noise(rng: np.random.Generator, rows: int, length: int) -> tuple[np.ndarray, str]:
    """(rows, length) unit-variance white, AR(1) or AR(2) noise (random stationary coefficients)."""
    e = _noise(rng, (rows, length))
    kind = _pick(rng, ("white", "ar1", "ar2"), (0.25, 0.4, 0.35))
    if kind == "white":
        return e, kind
    if kind == "ar1":
        a = [1.0, -rng.uniform(-0.5, 0.97)]
    elif rng.random() < 0.5:                                                    # two real roots
        r1, r2 = rng.uniform(-0.9, 0.95, 2)
        a = [1.0, -(r1 + r2), r1 * r2]
    else:                                                                       # complex roots: quasi-cycles
        r, th = rng.uniform(0.5, 0.97), rng.uniform(0.1, np.pi)
        a = [1.0, -2 * r * np.cos(th), r * r]
    y = lfilter(np.ones(1, np.float32), np.asarray(a, np.float32), e, axis=1)
    return y / (y.std() + 1e-6), kind


def _level(rng: np.random.Generator, rows: int, tau: np.ndarray, cfg: PriorConfig, comps: list[str]) -> np.ndarray | None:
    """(rows, length) trend + random walk + level shifts (each with its chance), or None."""
    base = None

    def add(x: np.ndarray) -> None:
        nonlocal base
        base = x if base is None else base + x

    if rng.random() < cfg.p_trend:
        kind = _pick(rng, ("linear", "damped", "piecewise"), (0.4, 0.25, 0.35))
        slope = (rng.normal() + 0.5 * rng.standard_normal((rows, 1))) * _loguniform(rng, (0.3, 3.0))
        if kind == "linear":
            add((slope * tau).astype(np.float32))
        elif kind == "damped":
            add((slope * (1 - np.exp(-tau / rng.uniform(0.05, 0.5)))).astype(np.float32))
        else:
            x = slope * tau
            for cp in np.sort(rng.uniform(0.05, 0.95, int(rng.integers(1, 5)))):
                x = x + slope * rng.normal(0, 1.5, (rows, 1)) * np.maximum(tau - cp, 0)
            add(x.astype(np.float32))
        comps.append(f"trend_{kind}")
    length = len(tau)
    if rng.random() < cfg.p_random_walk:
        add(np.cumsum(_noise(rng, (rows, length)), axis=1) * np.float32(_loguniform(rng, (0.3, 3.0)) / np.sqrt(length)))
        comps.append("random_walk")
    if rng.random() < cfg.p_level_shift:
        k = int(rng.integers(1, 4))
        at, jump = rng.uniform(0.05, 0.95, (k, rows, 1)), rng.normal(0, _loguniform(rng, (0.3, 2.0)), (k, rows, 1))
        add((jump * (tau >= at)).sum(0).astype(np.float32))
        comps.append("level_shift")
    return base


def _latents(rng: np.random.Generator, cfg: PriorConfig, rows: int, length: int, periods: list[int],
             aligned: list[bool], step0: int, comps: list[str]) -> tuple[np.ndarray, list[str]]:
    """(rows, length) standardised latent series (a random sum / product of components) and the profile
    shape of each period. Time index i is step step0 + i of the clock (aligned periods use that phase)."""
    tau = np.linspace(0, 1, length, dtype=np.float32)
    season, shapes = None, []
    if periods:
        parts = []
        for p, al in zip(periods, aligned):
            prof, shape = _profile(rng, p, rows, cfg)
            start = (step0 + rng.integers(-(p // 48), p // 48 + 1, rows)) % p if al else rng.integers(0, p, rows)
            parts.append(_tile(prof, start, length))
            shapes.append(shape)
        amps = rng.lognormal(0, 0.5, len(parts)).astype(np.float32)
        if len(parts) > 1 and rng.random() < cfg.p_seasonal_product:               # e.g. daily x weekly
            mod = parts[1] / (np.abs(parts[1]).max() + 1e-6)
            season = amps[0] * parts[0] * (1 + np.float32(rng.uniform(0.3, 0.9)) * mod)
            parts, amps = parts[2:], amps[2:]
            comps.append("seasonal_product")
        for a, part in zip(amps, parts):
            season = a * part if season is None else season + a * part
        comps.append("seasonal")
        if rng.random() < cfg.p_amplitude_drift:
            wob = rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(0.2, 1.5) * tau + rng.uniform(0, 2 * np.pi, (rows, 1)))
            season = season * np.exp(wob + rng.uniform(-1, 1) * (tau - 0.5)).astype(np.float32)
            comps.append("amplitude_drift")
    base = _level(rng, rows, tau, cfg, comps)
    if season is not None and base is not None and rng.random() < cfg.p_multiplicative:
        level = np.exp(np.float32(rng.uniform(0.2, 0.7)) * _standardize(base, axis=1))
        x = level * (1 + np.float32(rng.uniform(0.3, 0.9)) * season / (np.abs(season).max() + 1e-6))
        comps.append("multiplicative")
    else:
        x = season if base is None else base if season is None else base + season
    if x is None or rng.random() < cfg.p_noise:
        noise, kind = _ar_noise(rng, rows, length)
        comps.append(f"noise_{kind}")
        if x is not None and rng.random() < cfg.p_heteroscedastic:                 # scale tied to phase or level
            by = "phase" if season is not None and rng.random() < 0.5 else "level"
            ref = season if by == "phase" else x
            lo, hi = ref.min(axis=1, keepdims=True), ref.max(axis=1, keepdims=True)
            noise = noise * (0.2 + 1.6 * (ref - lo) / (hi - lo + 1e-6))
            comps.append(f"hetero_{by}")
        noise = noise * np.float32(_loguniform(rng, cfg.noise_scale))
        x = noise if x is None else x + noise
    return _standardize(x, axis=1), shapes
