-- Custom attributes for ChartMogul, one row per customer (used by chartmogul_attributes_from_sql).
--
-- Identifier column: external_id, the customer's ID in the billing system, which ChartMogul
-- imported as the customer's external_id. (customer_uuid or email work too.)
-- Every other column becomes a custom attribute keyed by the column name (ChartMogul keys are
-- letters, digits and underscores). A NULL leaves that attribute as it is in ChartMogul.
-- Types come from the values (TEXT String, INTEGER Integer, REAL Decimal) unless the DAG's
-- attribute_types names the column: SQLite has no BOOLEAN or TIMESTAMP type.
--
-- This file is a Jinja template: the WHERE clause uses the DAG's "min_seats" param.
SELECT
    external_id,
    plan_tier,
    seats,
    cac,                        -- customer acquisition cost, USD
    is_pro       AS pro,        -- 0/1 in SQLite: attribute_types makes it a Boolean
    converted_at,               -- ISO 8601 text in SQLite: attribute_types makes it a Timestamp
    segment
FROM customer_attributes
WHERE seats IS NULL OR seats >= {{ params.min_seats }}
ORDER BY external_id
