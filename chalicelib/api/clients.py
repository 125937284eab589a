"""The client directory at the HTTP edge."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.domain.clients import Client, ClientChanges, ClientProfile
from chalicelib.schemas import ClientCreate, ClientOut, ClientUpdate
from chalicelib.schemas import Page as PageOut

# For the type checker only: the modules behind them import boto3, which the app's
# import (every function's cold start) should not pay for here (see bootstrap.py).
if TYPE_CHECKING:
    from chalicelib.ports import Page


def profile(data: ClientCreate) -> ClientProfile:
    return ClientProfile(phone=data.phone, code=data.code, tag=data.tag, utc=data.utc)


def changes(data: ClientUpdate) -> ClientChanges:
    return ClientChanges(phone=data.phone, code=data.code, tag=data.tag, utc=data.utc)


def client_out(client: Client) -> ClientOut:
    return ClientOut(
        id=client.id, phone=client.phone, code=client.code, tag=client.tag, utc=client.utc
    )


def page_out(page: Page[Client]) -> PageOut[ClientOut]:
    return PageOut[ClientOut](items=[client_out(c) for c in page.items], next=page.next)
