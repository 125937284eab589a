"""Client directory use cases."""

from __future__ import annotations

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.errors import NotFound
from chalicelib.schemas import ClientCreate, ClientOut, ClientUpdate, Page
from chalicelib.storage import clients as store
from chalicelib.storage.models import ClientModel

log = logs.get_logger("clients")


def to_out(client: ClientModel) -> ClientOut:
    return ClientOut(
        id=int(client.id),
        phone=client.phone,
        code=client.code,
        tag=client.tag,
        utc=client.utc,
    )


class ClientService:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def create(self, data: ClientCreate) -> ClientOut:
        client = store.create(
            phone=data.phone, code=data.code, tag=data.tag, utc=data.utc, now=self._clock()
        )
        log.info(
            "client created",
            extra={"client_id": client.id, "phone": logs.mask_phone(client.phone)},
        )
        return to_out(client)

    def get(self, client_id: int) -> ClientOut:
        client = store.get(client_id)
        if client is None:
            raise NotFound(f"Client {client_id} does not exist.")
        return to_out(client)

    def update(self, client_id: int, data: ClientUpdate) -> ClientOut:
        changes = data.model_dump(exclude_unset=True)
        client = store.update(client_id, changes, now=self._clock())
        log.info("client updated", extra={"client_id": client_id, "changed": sorted(changes)})
        return to_out(client)

    def delete(self, client_id: int) -> None:
        store.delete(client_id)
        log.info("client deleted", extra={"client_id": client_id})

    def list(
        self, *, code: str | None, tag: str | None, limit: int, cursor: str | None
    ) -> Page[ClientOut]:
        page = store.list_page(code=code, tag=tag, limit=limit, cursor=cursor)
        return Page[ClientOut](items=[to_out(c) for c in page.items], next=page.next)
