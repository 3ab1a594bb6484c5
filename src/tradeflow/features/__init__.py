"""Causal features: build_features(bars, vix, spec) is the same call in research and in a live tick;
build_panel(bars_by_symbol, vix, universe, spec) is that call per symbol, on the universe's common sessions."""

from tradeflow.features.build import (
    Features,
    FeaturesStaleError,
    build_features,
    features_for_live,
    write_features,
)
from tradeflow.features.panel import PanelFeatures, build_panel, panel_of, write_panel
from tradeflow.features.schema import FeatureError, FeatureSchemaError, feature_schema, validate_features
from tradeflow.features.spec import DEFAULT_SPEC, FEATURE_VERSION, FeatureSpec

__all__ = [
    "DEFAULT_SPEC",
    "FEATURE_VERSION",
    "FeatureError",
    "FeatureSchemaError",
    "FeatureSpec",
    "Features",
    "FeaturesStaleError",
    "PanelFeatures",
    "build_features",
    "build_panel",
    "feature_schema",
    "features_for_live",
    "panel_of",
    "validate_features",
    "write_features",
    "write_panel",
]
