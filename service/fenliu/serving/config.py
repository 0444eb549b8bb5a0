"""How a serving process is configured: one frozen :class:`ServeConfig`, built once at the edge.

``fenliu serve`` builds it from its command line (:mod:`fenliu.cli.serve`); code and tests build it
directly (``ServeConfig(rules="rules/wushen", workers=2)``). Every default is written here once, and
the help text of the command line reads it. Nothing here knows argparse, gRPC or the engine.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from dataclasses import dataclass
from typing import Final

from fenliu.i18n import _

DEFAULT_ADDRESS: Final = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
DEFAULT_THREADS: Final = 16
DEFAULT_GRACE_SECONDS: Final = 10.0
#: Streams (TriageStream, health Watch, reflection) open at once per worker; beyond: RESOURCE_EXHAUSTED.
DEFAULT_MAX_STREAMS: Final = 64
#: A TriageStream (or reflection stream) that neither sends nor is sent anything this long is cancelled.
DEFAULT_STREAM_IDLE_SECONDS: Final = 60.0
DEFAULT_DECISION_LOG_MAX_BYTES: Final = 100 << 20
DEFAULT_DECISION_LOG_BACKUPS: Final = 10
#: The matter store's defaults (docs/matters.md): the window, the deadline of one lookup-and-write.
DEFAULT_MATTER_WINDOW_DAYS: Final = 180
DEFAULT_STORE_DEADLINE_MS: Final = 10.0
#: Where ``make run`` keeps its state (the SQLite matter store, its queue, its hash key).
DEFAULT_STATE_DIR: Final = ".fenliu-state"


class ConfigError(ValueError):
    """A setting that cannot serve, in one line for the operator (``fenliu serve: …``)."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key; with ``client_ca``, mutual TLS."""

    cert: str
    key: str
    client_ca: str | None = None

    def check(self) -> None:
        """Raise ``ValueError`` with one line for the operator if the files cannot serve TLS: unreadable,
        not PEM, or a key that does not match its certificate (gRPC only says "Failed to bind")."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        for flag, path in (
            ("--tls-cert", self.cert),
            ("--tls-key", self.key),
            ("--tls-client-ca", self.client_ca),
        ):
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(_("{flag} {path}: cannot read it").format(flag=flag, path=path))
        try:
            ctx.load_cert_chain(self.cert, self.key, password=lambda: b"")
        except ssl.SSLError as e:
            if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
                raise ValueError(
                    _("--tls-key {key} does not match the certificate --tls-cert {cert}").format(
                        key=self.key, cert=self.cert
                    )
                ) from None
            raise ValueError(
                _(
                    "--tls-cert {cert} and --tls-key {key} must be a PEM certificate chain and its "
                    "unencrypted private key ({reason})"
                ).format(cert=self.cert, key=self.key, reason=e.reason or _("unreadable"))
            ) from None
        if self.client_ca:
            try:
                ctx.load_verify_locations(cafile=self.client_ca)
            except ssl.SSLError as e:
                raise ValueError(
                    _("--tls-client-ca {ca} must hold PEM CA certificates ({reason})").format(
                        ca=self.client_ca, reason=e.reason or _("unreadable")
                    )
                ) from None


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``fenliu serve`` is told, typed, with its defaults. Frozen: a worker process gets a
    copy (pickled by ``spawn``), and the supervisor derives changed copies with :meth:`replace`."""

    rules: str | None = None
    address: str = DEFAULT_ADDRESS
    workers: int = 1
    threads: int = DEFAULT_THREADS
    max_streams: int = DEFAULT_MAX_STREAMS
    stream_idle_timeout: float = DEFAULT_STREAM_IDLE_SECONDS
    pin_cpus: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace: float = DEFAULT_GRACE_SECONDS
    drain: float = 0.0
    watch: bool = True
    metrics_address: str | None = None
    metrics_tls: bool = False
    decision_log: str | None = None
    decision_log_key_file: str | None = None
    decision_log_max_bytes: int = DEFAULT_DECISION_LOG_MAX_BYTES
    decision_log_backups: int = DEFAULT_DECISION_LOG_BACKUPS
    decision_log_keep_text: bool = False
    log_level: str = "INFO"
    #: The matter store's URL (``sqlite:///PATH``, ``postgresql://…``, ``memory:``); ``None``: no store.
    store: str | None = None
    #: The key identities are hashed with; without it, the decision log's key (file or environment).
    store_key_file: str | None = None
    matter_window_days: int = DEFAULT_MATTER_WINDOW_DAYS
    store_deadline_ms: float = DEFAULT_STORE_DEADLINE_MS
    #: Start (and keep trying the store) when it cannot be reached at start, instead of refusing to.
    store_degraded_ok: bool = False
    #: Where sightings the store could not take wait (default: beside an SQLite file, else in the
    #: state dir).
    store_queue_dir: str | None = None
    #: Set by the supervisor, not the command line: the CPUs of ``pin_cpus``, resolved once.
    pinned_cpus: tuple[int, ...] | None = None
    #: Set by the supervisor for a worker that replaces a dead one: the sealed copy of the serving pack.
    sealed_pack: dict[str, str] | None = None

    def queue_dir(self) -> str:
        """The folder of the matter store's local queue."""
        if self.store_queue_dir:
            return self.store_queue_dir
        url = self.store or ""
        if url.startswith("sqlite:") or ("://" not in url and url not in ("memory:", "")):
            path = url.removeprefix("sqlite:")
            path = "/" + path.lstrip("/") if path.startswith("/") else path
            return path + ".queue"
        return os.path.join(DEFAULT_STATE_DIR, "matter-queue")

    def replace(self, **changes: object) -> ServeConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def tls(self) -> TlsFiles | None:
        """The TLS files, or ``None`` for plaintext. Raises :class:`ConfigError` for settings that do
        not go together."""
        cert, key, ca = self.tls_cert, self.tls_key, self.tls_client_ca
        if not cert and not key and not ca:
            if self.metrics_tls:
                raise ConfigError(_("--metrics-tls serves the certificate of --tls-cert and --tls-key"))
            return None
        if not cert or not key:
            raise ConfigError(_("--tls-cert and --tls-key go together (and --tls-client-ca needs both)"))
        if self.metrics_tls and not self.metrics_address:
            raise ConfigError(_("--metrics-tls needs --metrics-address"))
        return TlsFiles(cert, key, ca)
