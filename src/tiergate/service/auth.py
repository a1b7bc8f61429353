"""API keys: random, shown once, stored as SHA-256 hashes, scoped to one tenant.

Keys carry 256 bits of randomness, so a fast hash is the right tool (as for GitHub tokens): a
slow password hash would only slow every request without adding security.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from tiergate.clock import Clock
from tiergate.core.model import ApiKey, Tenant
from tiergate.ids import new_id
from tiergate.ports import Store

__all__ = ["Auth", "Principal", "hash_key"]

KEY_PREFIX = "tg_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: Tenant
    key_id: str
    is_admin: bool


class Auth:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def create_tenant(self, name: str, **settings: object) -> Tenant:
        name = name.strip()
        if not name or len(name) > 100:
            raise ValueError("tenant name: 1-100 characters")
        if await self.store.find_tenant_by_name(name) is not None:
            raise ValueError(f"tenant {name!r} exists already")
        tenant = Tenant(id=new_id("ten"), name=name, created_at=self.clock.now())
        for key, value in settings.items():
            setattr(tenant, key, value)
        return await self.store.create_tenant(tenant)

    async def create_key(self, tenant_id: str, *, admin: bool = False, label: str = "",
                         plaintext: str | None = None) -> tuple[ApiKey, str]:
        """A new key for the tenant; returns (record, plaintext). The plaintext is never stored."""
        await self.store.get_tenant(tenant_id)
        plaintext = plaintext or KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id=new_id("key"), tenant_id=tenant_id, key_hash=hash_key(plaintext),
                     prefix=plaintext[:8], is_admin=admin, created_at=self.clock.now(), label=label)
        return await self.store.create_api_key(key), plaintext

    async def authenticate(self, plaintext: str) -> Principal | None:
        if not plaintext or len(plaintext) > 200:
            return None
        found = await self.store.find_principal(hash_key(plaintext))
        if found is None:
            return None
        key, tenant = found
        return Principal(tenant, key.id, key.is_admin)

    async def bootstrap(self, admin_key: str = "") -> str | None:
        """First start: a 'default' tenant and an admin key. Returns a newly created plaintext key.

        With ``admin_key`` given (TIERGATE_API_KEY), that key is registered if it is not yet.
        """
        tenant = await self.store.find_tenant_by_name("default")
        if tenant is None:
            tenant = await self.create_tenant("default")
        if admin_key:
            if await self.store.find_api_key(hash_key(admin_key)) is None:
                await self.create_key(tenant.id, admin=True, label="TIERGATE_API_KEY", plaintext=admin_key)
            return None
        if any(k.is_admin and k.revoked_at is None for k in await self.store.list_api_keys()):
            return None
        _, plaintext = await self.create_key(tenant.id, admin=True, label="created at first start")
        return plaintext
