"""Inputs for a user's model: --shape values, --input-data files, or generated data.

Whatever the source, the arrays are checked against the model's inputs (count, names, dtype,
trailing shape) before anything runs, and the result is one array per input name with the batch
dimension first.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from toolkit.errors import BadInputError
from toolkit.modelfile import TensorSpec

T = TypeVar("T")
GENERATED_ROWS = 64
SEED = 0


def _name_unnamed(values: dict[str, T], names: list[str], refusal: str) -> dict[str, T]:
    """Give the unnamed value (key "") of a one-input model its input's name."""
    if "" not in values:
        return values
    if len(names) != 1:
        raise BadInputError(refusal)
    return {names[0]: values[""], **{k: v for k, v in values.items() if k}}


def parse_shapes(values: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`NAME=3x224x224` (or `3,224,224`; NAME may be left out for a one-input model): the shape
    of one row, without the batch dimension."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        parts = [p for p in re.split(r"[x,]", dims.strip()) if p]
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if not shape or any(d < 1 for d in shape):
            raise BadInputError(
                f"--shape {value!r}: give NAME=DIMS with whole numbers >= 1, the shape of one "
                "row without the batch dimension, e.g. --shape input=3x224x224"
            )
        shapes[name.strip()] = shape
    return shapes


def row_shapes(specs: Sequence[TensorSpec], shapes: dict[str, tuple[int, ...]]
               ) -> dict[str, tuple[int, ...]]:
    """The shape of one row of each input, its named dimensions filled from `shapes`."""
    names = [s.name for s in specs]
    shapes = _name_unnamed(shapes, names, (
        f"--shape without a name fits a one-input model; this one has inputs "
        f"{', '.join(names)}: write --shape NAME=DIMS"))
    for name in shapes:
        if name not in names:
            raise BadInputError(
                f"--shape names input {name!r}, which the model does not have; its inputs: "
                f"{', '.join(names)}"
            )
    rows = {}
    for spec in specs:
        declared = spec.shape[1:]
        given = shapes.get(spec.name)
        if given is not None:
            fits = len(given) == len(declared) and all(
                not isinstance(d, int) or d == g for d, g in zip(declared, given, strict=True))
            if not fits:
                raise BadInputError(
                    f"--shape {spec.name}={'x'.join(map(str, given))} does not fit the model's "
                    f"input {spec.describe()} (one row: the dimensions after the batch)"
                )
            rows[spec.name] = given
            continue
        named = [str(d) for d in declared if not isinstance(d, int)]
        if named:
            raise BadInputError(
                f"input {spec.describe()} has dimension(s) {', '.join(named)} besides the batch: "
                f"give them with --shape {spec.name}=DIMS or pass --input-data"
            )
        rows[spec.name] = tuple(int(d) for d in declared)  # type: ignore[arg-type]
    return rows


def generate(
    specs: Sequence[TensorSpec], rows: dict[str, tuple[int, ...]], count: int = GENERATED_ROWS,
    seed: int = SEED,
) -> dict[str, np.ndarray]:
    """Seeded data for each input: normal floats, small non-negative integers, random booleans."""
    rng = np.random.default_rng(seed)
    data = {}
    for spec in specs:
        shape = (count, *rows[spec.name])
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            data[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            data[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            data[spec.name] = rng.random(shape) < 0.5
        else:
            raise BadInputError(
                f"input {spec.describe()}: deploybench cannot generate {dtype} data; pass "
                "--input-data"
            )
    return data


def read_data_file(path: Path, flag: str = "--input-data") -> dict[str, np.ndarray]:
    """.npy (one array), .npz (one array per input name) or .csv (numbers, header optional).
    Arrays of a file with no names are keyed ""."""
    if not path.is_file():
        raise BadInputError(f"{flag} {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        if suffix == ".csv":
            return {"": _read_csv(path)}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{flag} {path}: cannot be read ({exc}); write it again with "
                            "numpy.save / numpy.savez") from None
    raise BadInputError(f"{flag} {path}: use a .npy, .npz or .csv file")


def _read_csv(path: Path) -> np.ndarray:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ValueError("the file is empty")
    first = lines[0].split(",")
    try:
        [float(v) for v in first]
        body = lines
    except ValueError:
        body = lines[1:]  # a header
    try:
        return np.array([[float(v) for v in line.split(",")] for line in body], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"non-numeric value ({exc})") from None


def fit_data(path: Path, data: dict[str, np.ndarray], specs: Sequence[TensorSpec],
             flag: str = "--input-data") -> tuple[dict[str, np.ndarray], list[str]]:
    """Match the file's arrays to the model's inputs, cast within a kind, and check shapes.
    Returns the arrays by input name and warnings (NaN or infinite values)."""
    names = [s.name for s in specs]
    data = _name_unnamed(data, names, (
        f"{flag} {path}: one unnamed array, but the model has inputs "
        f"{', '.join(names)}: use a .npz with one array per input name"))
    missing = [n for n in names if n not in data]
    extra = [n for n in data if n not in names]
    if missing or extra:
        raise BadInputError(
            f"{flag} {path}: arrays {', '.join(sorted(data))} do not match the model's "
            f"inputs {', '.join(names)}"
        )
    fitted, warnings = {}, []
    for spec in specs:
        array = np.asarray(data[spec.name])
        want = np.dtype(spec.dtype)
        if array.ndim != len(spec.shape) or array.shape[0] == 0:
            raise BadInputError(
                f"{flag} {path}: array {spec.name!r} has shape {array.shape}; the model's "
                f"input is {spec.describe()} (rows first)"
            )
        for axis, (dim, size) in enumerate(zip(spec.shape, array.shape, strict=True)):
            if axis and isinstance(dim, int) and dim != size:
                raise BadInputError(
                    f"{flag} {path}: array {spec.name!r} has shape {array.shape}; the "
                    f"model's input is {spec.describe()}"
                )
        castable = (array.dtype.kind == want.kind or (array.dtype.kind in "iub"
                    and want.kind == "f") or (array.dtype.kind in "iu" and want.kind in "iu"))
        if not castable:
            raise BadInputError(
                f"{flag} {path}: array {spec.name!r} holds {array.dtype} values; the "
                f"model's input wants {want}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            warnings.append(f"{flag} {path}: array {spec.name!r} holds {bad} NaN or "
                            "infinite value(s); timings on them may not be typical")
        fitted[spec.name] = np.ascontiguousarray(array.astype(want, copy=False))
    return fitted, warnings
