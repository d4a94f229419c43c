"""ChartMogul custom attributes: the type rules, checked without I/O (see ``docs/attribute-rules.md``)."""

from airflow_provider_chartmogul.attributes.attribute import (
    ATTRIBUTE_FIELDS,
    ATTRIBUTE_TYPES,
    CustomAttribute,
    canonical_type,
    infer_type,
)
from airflow_provider_chartmogul.attributes.compare import type_of_stored_value, values_equal
from airflow_provider_chartmogul.attributes.keys import validate_key
from airflow_provider_chartmogul.attributes.normalize import normalize_attribute, normalize_custom
from airflow_provider_chartmogul.attributes.values import (
    BOOLEAN_FALSE,
    BOOLEAN_TRUE,
    INTEGER_MAX,
    INTEGER_MIN,
    MAX_STRING_LENGTH,
    normalize_value,
)

__all__ = [
    "ATTRIBUTE_FIELDS",
    "ATTRIBUTE_TYPES",
    "BOOLEAN_FALSE",
    "BOOLEAN_TRUE",
    "INTEGER_MAX",
    "INTEGER_MIN",
    "MAX_STRING_LENGTH",
    "CustomAttribute",
    "canonical_type",
    "infer_type",
    "normalize_attribute",
    "normalize_custom",
    "normalize_value",
    "type_of_stored_value",
    "validate_key",
    "values_equal",
]
