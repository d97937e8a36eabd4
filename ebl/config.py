"""Settings, read from the environment with the prefix ``EBL_`` (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ebl.errors import SetupError

DEFAULT_DATABASE_URL = "sqlite:///./data/ebl.db"


class SettingsError(SetupError):
    """An ``EBL_*`` environment variable holds a value the node cannot run with."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EBL_", extra="ignore")

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy URL; SQLite by default")
    keys_dir: Path = Field(Path("keys"), description="node key, key-encryption key, trust store")
    platform: Annotated[str, Field(pattern=r"^[A-Z0-9]{4}$")] = "CQSB"
    sandbox: bool | None = Field(
        None, description="seed the corridor parties and serve their API keys; default: on for SQLite"
    )
    max_body_bytes: Annotated[int, Field(gt=0)] = 1_000_000
    max_document_bytes: Annotated[int, Field(gt=0)] = Field(
        10_000_000,
        description="the largest additional document (DCSA PINT) this node receives; sent in base64, its body may be "
        "a third larger than EBL_MAX_BODY_BYTES allows other bodies",
    )
    rate_limit_per_second: Annotated[float, Field(ge=0)] = Field(
        100.0, description="requests a second each API key (or, unauthenticated, each client address) may make; 0: off"
    )
    rate_limit_burst: Annotated[int, Field(gt=0)] = Field(
        200, description="requests a client may save up and spend at once"
    )
    shutdown_grace_seconds: Annotated[int, Field(gt=0)] = Field(
        30, description="on SIGTERM, how long in-flight requests may take to finish before the server stops"
    )
    worker_threads: Annotated[int, Field(gt=0, le=200)] = Field(
        4, description="threads per process for blocking work: PostgreSQL queries, SQLite commits, verification"
    )
    log_origin: str | None = Field(None, description="the log's C2SP origin; default <platform>.ebl.example/log")
    checkpoint_every_entries: Annotated[int, Field(gt=0)] = 100
    checkpoint_interval_seconds: Annotated[float, Field(gt=0)] = 10.0
    witnesses: list[str] = Field(
        default_factory=list,
        description="URL prefixes of peer witnesses (C2SP tlog-witness), e.g. http://127.0.0.1:8001/v1/log/witness; "
        "default: the witness of every peer",
    )
    peers: dict[str, str] = Field(
        default_factory=dict,
        description='other platforms\' nodes, by platform code, e.g. {"SGSB": "http://127.0.0.1:8001"}: eBLs move to '
        "them over DCSA PINT, and they witness this node's log; with peers, a sandbox node seeds only its own side",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # Named as the operator set them, not as pydantic's field paths, and without the input echoed back.
            problems = [
                f"EBL_{str(error['loc'][0]).upper()}: {error['msg']}" if error["loc"] else error["msg"]
                for error in exc.errors(include_url=False, include_input=False)
            ]
            raise SettingsError("; ".join(problems)) from None

    @property
    def witness_urls(self) -> list[str]:
        return self.witnesses or [f"{url.rstrip('/')}/v1/log/witness" for url in self.peers.values()]

    @field_validator("peers")
    @classmethod
    def _peers_are_other_platforms(cls, peers: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        platform = info.data.get("platform")
        if platform in peers:
            raise PydanticCustomError(
                "own_platform", "names {platform}, this node's own platform", {"platform": platform}
            )
        return peers

    @model_validator(mode="after")
    def _default_sandbox(self) -> Settings:
        if self.sandbox is None:
            self.sandbox = self.database_url.startswith("sqlite")
        return self

    @property
    def max_large_body_bytes(self) -> int:
        """The largest body that carries an eBL's whole chain or a document: what the base64 of a document of
        ``max_document_bytes`` takes in a JSON string. A DCSA PINT envelope or additional document, or a bundle to
        verify (a chain grows with every action, and 1 MB held some 500–600 entries)."""
        return 4 * -(-self.max_document_bytes // 3) + 2

    @property
    def is_sandbox(self) -> bool:
        return bool(self.sandbox)
