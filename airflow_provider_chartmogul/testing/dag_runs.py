"""Read what a finished DAG run left behind, for tests of DAGs that use this provider.

After ``run = dag.test()`` the operator's report is the ``return_value`` XCom of its task::

    from airflow_provider_chartmogul.testing.dag_runs import task_xcom

    run = dag.test()
    report = task_xcom(run, "push_attributes")
    assert report["failed"] == 0, report["failures"]

It reads the metadata database of the current ``AIRFLOW_HOME`` (migrated, as ``dag.test()`` needs
it) and works on Airflow 2.10 to 3.x. Airflow is imported when it is called, not when this module is
imported, so a test may set up ``AIRFLOW_HOME`` and connections after importing it. No pytest needed.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["DagRunLike", "task_xcom"]


class DagRunLike(Protocol):
    """What :func:`task_xcom` needs of a run: a ``DagRun``, as ``dag.test()`` returns it."""

    @property
    def dag_id(self) -> str: ...

    @property
    def run_id(self) -> str: ...


def task_xcom(run: DagRunLike, task_id: str, *, map_index: int = -1, key: str = "return_value") -> Any:
    """The XCom ``key`` that task instance ``task_id`` (``map_index``: of a mapped task) pushed in
    ``run``, deserialized; None when it pushed none (a task that returns None pushes nothing).

    For the provider's operators the ``return_value`` is the push report: counts, failures with
    their records, request statistics. It is there also when the task failed.
    """
    from sqlalchemy import select

    try:  # Airflow 3: the table's ORM model (airflow.models.XCom is the Task SDK's now)
        from airflow.models.xcom import XComModel as XCom
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom  # type: ignore[no-redef]
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            select(XCom).where(
                XCom.dag_id == run.dag_id,
                XCom.run_id == run.run_id,
                XCom.task_id == task_id,
                XCom.map_index == map_index,
                XCom.key == key,
            )
        ).one_or_none()
        return None if row is None else XCom.deserialize_value(row)
