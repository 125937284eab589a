"""Client directory use cases."""

from __future__ import annotations

from chalicelib import logs
from chalicelib.clock import Clock
from chalicelib.domain.clients import Client, ClientChanges, ClientProfile, changed_fields
from chalicelib.errors import Conflict, NotFound
from chalicelib.ports import ClientRepository, Page, PhoneTaken, StaleClient

log = logs.get_logger("clients")

# A client changed by another writer between our read and write is re-read this often.
UPDATE_ATTEMPTS = 3


class ClientService:
    def __init__(self, clock: Clock, clients: ClientRepository) -> None:
        self._clock = clock
        self._clients = clients

    def create(self, profile: ClientProfile) -> Client:
        try:
            client = self._clients.create(profile, self._clock())
        except PhoneTaken:
            raise _phone_taken() from None
        log.info(
            "client created",
            extra={"client_id": client.id, "phone": logs.mask_phone(client.phone)},
        )
        return client

    def get(self, client_id: int) -> Client:
        client = self._clients.get(client_id)
        if client is None:
            raise _not_found(client_id)
        return client

    def update(self, client_id: int, changes: ClientChanges) -> Client:
        """Apply a partial update; a phone another client holds is a conflict."""
        for _ in range(UPDATE_ATTEMPTS):
            client = self.get(client_id)
            profile = changes.applied_to(client)
            if changed_fields(client, profile):
                try:
                    client = self._clients.update(client, profile, self._clock())
                except StaleClient:
                    continue  # changed meanwhile: re-read and apply the changes again
                except PhoneTaken:
                    raise _phone_taken() from None
            log.info(
                "client updated", extra={"client_id": client_id, "changed": sorted(changes.given())}
            )
            return client
        raise _changed_meanwhile()

    def delete(self, client_id: int) -> None:
        for _ in range(UPDATE_ATTEMPTS):
            try:
                self._clients.delete(self.get(client_id))
            except StaleClient:
                continue
            log.info("client deleted", extra={"client_id": client_id})
            return
        raise _changed_meanwhile()

    def list(
        self, *, code: str | None, tag: str | None, limit: int, cursor: str | None
    ) -> Page[Client]:
        return self._clients.page(code=code, tag=tag, limit=limit, cursor=cursor)


def _not_found(client_id: int) -> NotFound:
    return NotFound(f"Client {client_id} does not exist.")


def _phone_taken() -> Conflict:
    return Conflict("Another client already has this phone.")


def _changed_meanwhile() -> Conflict:
    return Conflict("The client was changed by another request; try again.")
