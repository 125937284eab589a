"""Optimistic locking with PynamoDB's VersionAttribute, on moto: a write made on a stale
read is refused, the API re-reads and answers as before (200, or 409 when the record
keeps changing), the engine's bookkeeping never makes an edit stale, and items stored
before versions existed take part as version 0."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest

from chalicelib.domain.clients import Client, ClientProfile
from chalicelib.domain.tasks import TaskPlan, TaskStatus
from chalicelib.ports import StaleClient, StaleTask
from chalicelib.storage.clients import DynamoClients
from tests.conftest import Api, FrozenClock

ANN = ClientProfile(phone="79001234567", code="900", tag="vip", utc="UTC")


def _plan(clock: FrozenClock, **changes: Any) -> TaskPlan:
    now = clock()
    values: dict[str, Any] = {
        "start": now + timedelta(hours=1),
        "end": now + timedelta(hours=2),
        "text": "Hi",
        "codes": (),
        "tags": (),
        "window": None,
        **changes,
    }
    return TaskPlan(**values)


def _drop_version(table: str, item_id: int) -> None:
    """What an item written before versions existed looks like."""
    boto3.client("dynamodb").update_item(
        TableName=table, Key={"id": {"N": str(item_id)}}, UpdateExpression="REMOVE version"
    )


# --- clients ----------------------------------------------------------------------------


def test_a_client_write_on_a_stale_read_is_refused(services: Any, clock: FrozenClock) -> None:
    clients = services.client_repository
    created = clients.create(ANN, clock())
    assert created.version == 1
    read = clients.get(created.id)
    changed = clients.update(read, ClientProfile("79001234568", "900", "gold", "UTC"), clock())
    assert changed.version == clients.get(created.id).version == 2
    with pytest.raises(StaleClient):
        clients.update(read, ClientProfile("79001234569", "901", "vip", "UTC"), clock())
    with pytest.raises(StaleClient):
        clients.delete(read)
    assert clients.get(created.id) == changed  # nothing of the stale writes landed
    clients.delete(changed)
    assert clients.get(created.id) is None


def test_a_client_from_before_versions_updates_and_locks(services: Any, clock: FrozenClock) -> None:
    clients = services.client_repository
    created = clients.create(ANN, clock())
    _drop_version(services.settings.clients_table, created.id)
    legacy = clients.get(created.id)
    assert legacy.version is None
    updated = clients.update(legacy, ClientProfile("79001234567", "900", "gold", "UTC"), clock())
    assert updated.version == clients.get(created.id).version == 1
    with pytest.raises(StaleClient):
        clients.update(legacy, ClientProfile("79001234567", "900", "new", "UTC"), clock())


def test_the_api_rereads_a_client_changed_between_its_read_and_write(
    api: Api, services: Any, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id = services.clients.create(ANN).id
    real_update = DynamoClients.update
    raced = []

    def update_after_another_writer(
        self: DynamoClients, client: Client, profile: ClientProfile, now: Any
    ) -> Client:
        if not raced:  # another request changes the tag between our read and our write
            raced.append(real_update(self, client, ClientProfile(**{**vars(ANN), "tag": "x"}), now))
        return real_update(self, client, profile, now)

    monkeypatch.setattr(DynamoClients, "update", update_after_another_writer)
    response = api.patch(f"/api/clients/{client_id}", {"code": "901"})
    assert response.status_code == 200, response.body
    assert response.json_body == {"id": client_id, **vars(ANN), "tag": "x", "code": "901"}


def test_a_client_that_keeps_changing_answers_409_and_keeps_the_other_writes(
    api: Api, services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id = services.clients.create(ANN).id
    real_update = DynamoClients.update
    tags = iter(["a", "b", "c"])

    def always_raced(
        self: DynamoClients, client: Client, profile: ClientProfile, now: Any
    ) -> Client:
        real_update(self, client, ClientProfile(**{**vars(ANN), "tag": next(tags)}), now)
        return real_update(self, client, profile, now)

    monkeypatch.setattr(DynamoClients, "update", always_raced)
    response = api.patch(f"/api/clients/{client_id}", {"code": "901"})
    assert response.status_code == 409, response.body
    assert response.json_body["error"] == "conflict"
    monkeypatch.setattr(DynamoClients, "update", real_update)
    stored = api.get(f"/api/clients/{client_id}").json_body
    assert stored == {"id": client_id, **vars(ANN), "tag": "c"}  # only the other writer's


# --- tasks ------------------------------------------------------------------------------


def test_a_task_write_on_a_stale_read_is_refused(services: Any, clock: FrozenClock) -> None:
    tasks = services.task_repository
    created = tasks.create(_plan(clock), TaskStatus.SCHEDULED, clock())
    assert created.version == 1
    read = tasks.get(created.id)
    changed = tasks.update(read, _plan(clock, text="New"), clock(), rejudge=False)
    assert (changed.text, changed.version) == ("New", 2)
    with pytest.raises(StaleTask):
        tasks.update(read, _plan(clock, text="Stale"), clock(), rejudge=False)
    with pytest.raises(StaleTask):
        tasks.set_status(read, TaskStatus.RUNNING, clock())
    running = tasks.set_status(tasks.get(created.id), TaskStatus.RUNNING, clock())
    assert (running.status, running.version) == (TaskStatus.RUNNING, 3)
    assert tasks.get(created.id).text == "New"


def test_the_engines_bookkeeping_leaves_the_version_alone(
    services: Any, clock: FrozenClock
) -> None:
    """Edits of a running task must not collide with its fan-out (nor the reverse)."""
    tasks = services.task_repository
    created = tasks.create(_plan(clock), TaskStatus.RUNNING, clock())
    read = tasks.get(created.id)
    planned = tasks.plan_fanout(read, max_id=40, ranks=2, now=clock())
    tasks.finish_fanout(planned, clock())
    assert tasks.mark_first_send(created.id, clock())
    tasks.clear_rejudge(read)
    after = tasks.get(created.id)
    assert after.version == read.version
    assert (after.fanout.done, after.first_sent) == (True, True)
    edited = tasks.update(read, _plan(clock, text="New"), clock(), rejudge=True)
    assert edited.version == read.version + 1
    assert edited.rejudge
    tasks.clear_rejudge(read)  # read before the edit: its re-judging is not done
    assert tasks.get(created.id).rejudge
    tasks.clear_rejudge(edited)
    assert not tasks.get(created.id).rejudge


def test_a_task_from_before_versions_updates_and_locks(services: Any, clock: FrozenClock) -> None:
    tasks = services.task_repository
    created = tasks.create(_plan(clock), TaskStatus.SCHEDULED, clock())
    _drop_version(services.settings.tasks_table, created.id)
    legacy = tasks.get(created.id)
    assert legacy.version is None
    tasks.clear_rejudge(legacy)  # matches the absent version
    started = tasks.set_status(legacy, TaskStatus.RUNNING, clock())
    assert started.version == tasks.get(created.id).version == 1
    with pytest.raises(StaleTask):
        tasks.update(legacy, _plan(clock, text="Stale"), clock(), rejudge=False)


def test_a_deleted_task_refuses_writes_read_before(services: Any, clock: FrozenClock) -> None:
    tasks = services.task_repository
    created = tasks.create(_plan(clock), TaskStatus.SCHEDULED, clock())
    read = tasks.get(created.id)
    assert tasks.delete(created.id, clock())
    assert not tasks.delete(created.id, clock())
    assert tasks.get(created.id) is None
    with pytest.raises(StaleTask):
        tasks.update(read, _plan(clock, text="New"), clock(), rejudge=False)
