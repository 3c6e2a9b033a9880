"""Readable numbers: durations in ns/µs/ms/s and ratios, with a few significant digits."""

from __future__ import annotations

import math


def significant(value: float, digits: int) -> str:
    """`value` rounded to `digits` significant digits, without exponent, thousands separated."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(digits - 1 - magnitude, 0)
    rounded = round(value, digits - 1 - magnitude)
    return f"{rounded:,.{decimals}f}"


def duration(seconds: float | None, digits: int = 3) -> str:
    """6.6 µs, 1.30 ms, 1.7 s, ... (dash for no value)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    scaled = abs(seconds)
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if scaled >= factor * 0.9995:
            return f"{significant(seconds / factor, digits)} {unit}"
    return f"{significant(seconds * 1e9, digits)} ns"


def ratio(value: float | None, digits: int = 2) -> str:
    """7,600×; 2.6×10^5× beyond a hundred thousand; 1.3× near one."""
    if value is None or not math.isfinite(value) or value <= 0:
        return "-"
    if value >= 1e5:
        exponent = math.floor(math.log10(value))
        return f"{significant(value / 10**exponent, digits)}×10^{exponent}"
    return f"{significant(value, digits)}×"


def rate(rows_per_s: float | None) -> str:
    if rows_per_s is None or not math.isfinite(rows_per_s):
        return "-"
    for unit, factor in (("M", 1e6), ("k", 1e3)):
        if rows_per_s >= factor:
            return f"{significant(rows_per_s / factor, 3)}{unit} rows/s"
    return f"{significant(rows_per_s, 3)} rows/s"


def size_text(size_bytes: int | None) -> str:
    """12.3 MB, 640 kB, 980 B (dash for no value)."""
    if size_bytes is None:
        return "-"
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size_bytes >= factor:
            return f"{significant(size_bytes / factor, 3)} {unit}"
    return f"{size_bytes} B"
