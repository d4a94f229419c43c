"""OpenLineage metadata for :class:`AddCustomAttributesOperator` (the ``openlineage`` extra).

Inputs are the tables the ``sql`` source reads, parsed with the OpenLineage provider's
``SQLParser`` the way common.sql's ``SQLExecuteQueryOperator`` does it, or, for records from XCom,
the upstream tasks that produced them. The one output is the ChartMogul account's customers,
``chartmogul://<API host>`` / ``customers``. On completion a ``chartmogul`` run facet carries the
run's counts from the report, and the output OpenLineage's standard ``outputStatistics`` facet
(``rowCount``: the customers written).

This module imports the OpenLineage provider at the top: the operator imports it only inside its
``get_openlineage_facets_on_*`` methods, so the operator works without the extra.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.openlineage import conf
from airflow.providers.openlineage.extractors import OperatorLineage
from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser
from attrs import define, field
from openlineage.client.event_v2 import Dataset, OutputDataset
from openlineage.client.facet_v2 import RunFacet, output_statistics_output_dataset

from airflow_provider_chartmogul.assets import CUSTOMERS, customers_namespace
from airflow_provider_chartmogul.version_compat import BaseHook

if TYPE_CHECKING:
    from airflow_provider_chartmogul.operators.custom_attributes import AddCustomAttributesOperator

CUSTOMERS_DATASET = CUSTOMERS
RUN_FACET_NAME = "chartmogul"
_SCHEMA_URL = (
    "https://raw.githubusercontent.com/chartmogul-airflow/airflow-provider-chartmogul/main/"
    "docs/openlineage/ChartMogulRunFacet.json"
)


@define
class ChartMogulRunFacet(RunFacet):
    """What one run did to the ChartMogul customers (the counts of the operator's report)."""

    mode: str
    dryRun: bool
    total: int
    succeeded: int
    failed: int
    skipped: int
    attributesAdded: int = 0
    attributesChanged: int = 0
    attributesUnchanged: int = 0
    attributesCleared: int = 0
    aborted: bool = False
    requests: int | None = field(default=None)

    _additional_skip_redact = ["mode"]

    @staticmethod
    def _get_schema() -> str:
        return _SCHEMA_URL

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> ChartMogulRunFacet:
        requests = report.get("requests")
        return cls(
            mode=str(report.get("mode", "")),
            dryRun=bool(report.get("dry_run", False)),
            total=int(report.get("total", 0)),
            succeeded=int(report.get("succeeded", 0)),
            failed=int(report.get("failed", 0)),
            skipped=int(report.get("skipped", 0)),
            attributesAdded=int(report.get("added", 0)),
            attributesChanged=int(report.get("changed", 0)),
            attributesUnchanged=int(report.get("unchanged", 0)),
            attributesCleared=int(report.get("cleared", 0)),
            aborted=bool(report.get("aborted", False)),
            requests=int(requests["requests"]) if isinstance(requests, Mapping) else None,
        )


def customers_dataset(chartmogul_conn_id: str, *, written: int | None = None) -> OutputDataset:
    """``chartmogul://api.chartmogul.com`` / ``customers``: the namespace is the connection's API host.

    :param written: customers the run wrote to, as the ``outputStatistics`` facet's ``rowCount``.
    """
    facets: dict[str, Any] = {}
    if written is not None:
        facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=written
        )
    return OutputDataset(
        namespace=customers_namespace(chartmogul_conn_id), name=CUSTOMERS_DATASET, outputFacets=facets
    )


def customers_written(report: Mapping[str, Any]) -> int:
    """Customers at least one write was applied to: those that succeeded, less those whose values
    were all equal already (sync mode); none in a dry run."""
    if report.get("dry_run"):
        return 0
    return int(report.get("succeeded", 0)) - int(report.get("customers_unchanged", 0))


def _sql_lineage(operator: AddCustomAttributesOperator) -> OperatorLineage:
    """Tables read by ``operator.sql``, as ``SQLExecuteQueryOperator.get_openlineage_facets_on_start``
    finds them: the hook's own OpenLineage database info when it has some, else (SQLite, for one)
    a namespace from the connection's type and host, and names from the parser alone."""
    assert operator.sql_conn_id is not None and operator.sql is not None
    connection = BaseHook.get_connection(operator.sql_conn_id)
    hook = connection.get_hook()
    database_info = None
    if callable(getattr(hook, "get_openlineage_database_info", None)):
        database_info = hook.get_openlineage_database_info(connection)
    dialect = "generic"
    if callable(getattr(hook, "get_openlineage_database_dialect", None)):
        dialect = hook.get_openlineage_database_dialect(connection)
    default_schema = None
    if callable(getattr(hook, "get_openlineage_default_schema", None)):
        default_schema = hook.get_openlineage_default_schema()
    if database_info is None:
        # The hook has no OpenLineage support (SQLite's, for one): no information schema to ask,
        # so names come from the parsed query, in a namespace from the connection's type and host.
        authority = connection.host or None
        if authority and connection.port:
            authority = f"{authority}:{connection.port}"
        database_info = DatabaseInfo(scheme=connection.conn_type or "sql", authority=authority)
        if connection.conn_type == "sqlite":
            default_schema = "main"  # SQLite's name for the database file's own schema
        use_connection = False
    else:
        try:
            from airflow.providers.openlineage.utils.utils import should_use_external_connection
        except ImportError:  # OpenLineage provider < 1.8 always uses the connection
            use_connection = True
        else:
            use_connection = should_use_external_connection(hook)
    parser = SQLParser(dialect=dialect, default_schema=default_schema)
    engine = hook.get_sqlalchemy_engine() if use_connection else None
    return parser.generate_openlineage_metadata_from_sql(
        sql=operator.sql,
        hook=hook,
        database_info=database_info,
        sqlalchemy_engine=engine,
        use_connection=use_connection,
    )


def _xcom_references(operator: AddCustomAttributesOperator) -> Iterator[tuple[str, str, str]]:
    """``(dag_id, task_id, key)`` of every XCom ``customers`` comes from.

    When the task runs, ``operator`` is a rendered copy whose ``customers`` is the resolved list;
    the DAG still holds the task as declared, with the ``XComArg`` (or, for a mapped task, its
    expand input)."""
    declared: Any = operator
    if operator.has_dag():
        declared = operator.dag.task_dict.get(operator.task_id, operator)
    sources = [getattr(declared, "customers", None), getattr(declared, "expand_input", None)]
    sources.append(getattr(declared, "partial_kwargs", {}).get("customers"))
    for source in sources:
        references = getattr(source, "iter_references", None)
        if callable(references):
            for upstream, key in references():
                yield upstream.dag_id, upstream.task_id, key


def _xcom_inputs(operator: AddCustomAttributesOperator) -> list[Dataset]:
    namespace = conf.namespace()
    inputs: dict[str, Dataset] = {}
    for dag_id, task_id, key in _xcom_references(operator):
        name = f"{dag_id}.{task_id}" if key == "return_value" else f"{dag_id}.{task_id}.{key}"
        inputs.setdefault(name, Dataset(namespace=namespace, name=name))
    return list(inputs.values())


def lineage_on_start(operator: AddCustomAttributesOperator) -> OperatorLineage:
    if operator.sql is not None:
        lineage = _sql_lineage(operator)
        inputs, job_facets, run_facets = list(lineage.inputs), lineage.job_facets, lineage.run_facets
    else:
        inputs, job_facets, run_facets = _xcom_inputs(operator), {}, {}
    return OperatorLineage(
        inputs=inputs,
        outputs=[customers_dataset(operator.chartmogul_conn_id)],
        job_facets=job_facets,
        run_facets=run_facets,
    )


def lineage_on_complete(
    operator: AddCustomAttributesOperator, report: Mapping[str, Any] | None
) -> OperatorLineage:
    lineage = lineage_on_start(operator)
    if report is not None:
        lineage.run_facets = {**lineage.run_facets, RUN_FACET_NAME: ChartMogulRunFacet.from_report(report)}
        lineage.outputs = [customers_dataset(operator.chartmogul_conn_id, written=customers_written(report))]
    return lineage
