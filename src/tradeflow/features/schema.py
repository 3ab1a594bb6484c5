"""The feature frame's contract (pandera), checked lazily so one error lists every failure.

Columns are exactly `session` + spec.names in order. Sessions are unique and strictly increasing;
every feature is a finite float64 (NaN fails as null, +-inf as not finite: one fault, one failure);
oscillators stay in 0..100, volatilities and turbulence are >= 0, the VIX level is > 0, and the
lower Bollinger band is never above the upper one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import Check

from tradeflow.errors import TradeflowError
from tradeflow.features.spec import DEFAULT_SPEC, FeatureSpec

_MAX_LISTED = 20


class FeatureError(TradeflowError):
    """Features could not be built or do not meet their contract."""


@dataclass(frozen=True)
class FeatureFailure:
    check: str
    column: str | None
    session: str | None
    value: object

    def __str__(self) -> str:
        where = f" at {self.session}" if self.session else ""
        return f"{self.column or 'frame'}{where}: {self.check} (value {self.value!r})"


class FeatureSchemaError(FeatureError):
    """The feature frame broke its schema; `failures` lists every broken (column, session, check)."""

    def __init__(self, failures: list[FeatureFailure]) -> None:
        self.failures = failures
        shown = "; ".join(str(f) for f in failures[:_MAX_LISTED])
        more = f"; ... and {len(failures) - _MAX_LISTED} more" if len(failures) > _MAX_LISTED else ""
        super().__init__(f"feature frame failed {len(failures)} check(s): {shown}{more}")


def _finite(s: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(s.to_numpy(dtype=np.float64)), index=s.index)


def _increasing(s: pd.Series) -> pd.Series:
    """Each session later than the previous row's (the first row has none to compare with)."""
    values = s.to_numpy(dtype="datetime64[ns]").view("int64")
    ok = np.ones(len(values), dtype=bool)
    ok[1:] = values[1:] > values[:-1]
    return pd.Series(ok, index=s.index)


def _bands_ordered(df: pd.DataFrame) -> pd.Series:
    return df["boll_lower"] <= df["boll_upper"]


def _checks_for(name: str) -> list[Check]:
    checks = [Check(_finite, error="finite")]
    if name.startswith(("rsi_", "dx_")):
        checks.append(Check.in_range(0.0, 100.0))
    elif name.startswith("realized_vol_") or name == "turbulence":
        checks.append(Check.ge(0.0))
    elif name == "vix":
        checks.append(Check.gt(0.0))
    return checks


@lru_cache(maxsize=8)
def feature_schema(spec: FeatureSpec = DEFAULT_SPEC) -> pa.DataFrameSchema:
    """The strict, ordered schema of a feature frame built with `spec`."""
    columns: dict[str, pa.Column] = {
        "session": pa.Column(
            "datetime64[ns]", Check(_increasing, error="session_increasing"), nullable=False, unique=True
        ),
        **{name: pa.Column("float64", _checks_for(name), nullable=False) for name in spec.names},
    }
    return pa.DataFrameSchema(
        columns,
        checks=[Check(_bands_ordered, error="boll_lower_above_upper")],
        strict=True,
        ordered=True,
        name=f"features_{spec.version}",
    )


def validate_features(frame: pd.DataFrame, spec: FeatureSpec = DEFAULT_SPEC) -> pd.DataFrame:
    """Return the frame when it meets the schema of `spec`, else raise FeatureSchemaError listing all failures."""
    data = frame.reset_index(drop=True)
    if data.empty:
        # Validate at every boundary, never vacuously: an empty frame is no evidence of anything.
        raise FeatureSchemaError([FeatureFailure("non_empty", None, None, 0)])
    try:
        feature_schema(spec).validate(data, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise FeatureSchemaError(_failures(exc.failure_cases, data)) from None
    return frame


def _failures(cases: pd.DataFrame, data: pd.DataFrame) -> list[FeatureFailure]:
    sessions = None
    if "session" in data.columns:
        sessions = pd.to_datetime(data["session"], errors="coerce").dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    out: list[FeatureFailure] = []
    seen: set[tuple[str, str | None, str | None]] = set()
    for check, column, value, index in zip(
        cases["check"].astype("str"), cases["column"], cases["failure_case"], cases["index"], strict=True
    ):
        row = None if index is None or pd.isna(index) else int(index)
        session = None
        if row is not None and sessions is not None and 0 <= row < len(sessions):
            session = sessions[row] if isinstance(sessions[row], str) else None
        col = None if column is None or (isinstance(column, float) and np.isnan(column)) else str(column)
        if check == "boll_lower_above_upper":
            col = "boll_lower"  # a frame-level check reports its row once per column: keep one
        key = (check, col, session)
        if key in seen:
            continue
        seen.add(key)
        name = "null" if check == "not_nullable" else check
        out.append(FeatureFailure(name, col, session, value))
    return out
