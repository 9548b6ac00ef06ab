"""A registry client for the OCI distribution API, used by the daemon to pull.

- References: ``[host[:port]/]repo[:tag][@digest]``; a name without a host is Docker Hub's
  (``docker.io/library/NAME``, served at registry-1.docker.io).
- Transport: HTTPS with the system CAs and the host's own (supervisor/images/tls.py); plain
  HTTP only for hosts configured insecure, and for localhost / 127.0.0.0/8 / ::1 when asked
  (``plain_http``). Per-registry mirrors are tried first.
- Auth: on 401, the ``WWW-Authenticate`` challenge — Bearer (token from the realm, with basic
  credentials if configured) or Basic — and the request is repeated once. Credentials go only to
  the host they are for: a redirect to another scheme or host (blob storage) is followed without
  the Authorization header, and so is a redirect of the token request.
- Bodies are streamed in chunks (never a whole blob in memory), with a socket timeout so a
  stalled registry fails in bounded time.

http.client and ssl are imported at the first request, not when the daemon starts (they bring
the email package and OpenSSL's TLS half: memory the daemon holds for nothing until it pulls).

Errors are RegistryError with the image and the reason (not found, unauthorized, ...); its
``reason`` says which, for the gRPC status the daemon answers with.
"""
from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import dataclass, field

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[:2]
TIMEOUT = 60.0
MAX_MANIFEST = 4 << 20


class RegistryError(Exception):
    """A pull failed at the registry; the message names the image and the reason. ``reason`` is
    "unauthorized", "forbidden", "not found" or "" (anything else)."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


@dataclass
class Reference:
    host: str
    repo: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """The image name as containerd records it."""
        out = f"{self.host}/{self.repo}"
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def object(self) -> str:
        return self.digest or self.tag


def parse_reference(text: str) -> Reference:
    ref = text.strip()
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not re.match(r"^sha256:[0-9a-f]{64}$", digest):
            raise RegistryError(f"{text}: bad digest {digest!r}")
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", ref
        if "/" not in path:
            path = "library/" + path
    tag = ""
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if not tag and not digest:
        tag = "latest"
    if not re.match(r"^[a-z0-9]+(?:[._\-/][a-z0-9]+)*$", path):
        raise RegistryError(f"{text}: invalid repository name {path!r}")
    return Reference(host, path, tag, digest)


@dataclass
class HostConfig:
    """What the daemon knows of a registry host: insecure (plain HTTP), credentials, mirrors,
    and TLS extras (CA files trusted for it, a client certificate)."""
    insecure: bool = False
    username: str = ""
    password: str = ""
    mirrors: list[str] = field(default_factory=list)
    timeout: float = TIMEOUT  # seconds a connect or a read may wait: a stalled registry fails
    ca: list[str] = field(default_factory=list)
    client_cert: str = ""
    client_key: str = ""


def load_hosts(path: str) -> dict[str, HostConfig]:
    """The daemon's registry configuration (``--registry-config``): a JSON file
    ``{"hosts": {"HOST[:PORT]": {"insecure": .., "username": .., "password": .., "mirrors": [..],
    "timeout": SECONDS, "ca": PATH or [PATH..], "client_cert": PATH, "client_key": PATH}}}``.
    No file, no entries."""
    if not path:
        return {}
    with open(path) as f:
        data = json.load(f)
    out = {}
    for host, cfg in (data.get("hosts") or {}).items():
        ca = cfg.get("ca") or []
        out[host] = HostConfig(bool(cfg.get("insecure")), str(cfg.get("username", "")),
                               str(cfg.get("password", "")), list(cfg.get("mirrors") or []),
                               float(cfg.get("timeout", TIMEOUT)),
                               [ca] if isinstance(ca, str) else [str(c) for c in ca],
                               str(cfg.get("client_cert", "")), str(cfg.get("client_key", "")))
    return out


def hosts_from_settings(settings) -> dict[str, HostConfig]:
    """Registry hosts from the daemon's settings: ``pull.hosts_file`` (the JSON file above),
    with ``registry.insecure`` and ``registry.mirrors`` (endpoint URLs) of the config file on
    top."""
    hosts = load_hosts(settings["pull.hosts_file"])
    for host in settings["registry.insecure"]:
        hosts.setdefault(host, HostConfig()).insecure = True
    for host, urls in settings["registry.mirrors"].items():
        hosts.setdefault(host, HostConfig()).mirrors += list(urls)
    return hosts


def is_local(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in ("localhost", "[::1]", "::1") or name.startswith("127.")


class Registry:
    """One repository on one registry (or its mirrors), with the auth state of the pull."""

    def __init__(self, ref: Reference, config: HostConfig | None = None,
                 plain_http: bool = False, certs_dir: str = ""):
        self.ref = ref
        self.config = config or HostConfig()
        host = "registry-1.docker.io" if ref.host == "docker.io" else ref.host
        self.hosts = list(self.config.mirrors) + [host]
        self.plain_http = plain_http
        self.certs_dir = certs_dir
        self.auth: str = ""
        self.contexts: dict = {}  # netloc -> ssl.SSLContext

    # -- requests ---------------------------------------------------------------------------------
    def _context(self, netloc: str):
        """The TLS context for ``netloc``, made once per pull (the registry's own host also
        gets the CA files of its hosts-file entry)."""
        if netloc not in self.contexts:
            import ssl
            from supervisor.images.tls import context_for
            own = self.config if netloc == self.hosts[-1] else None
            try:
                self.contexts[netloc] = context_for(netloc, own, self.certs_dir)
            except (OSError, ssl.SSLError) as e:
                raise RegistryError(f"{self.ref.name}: {netloc}: TLS configuration: {e}") \
                    from None
        return self.contexts[netloc]

    def _connect(self, scheme: str, netloc: str):
        import http.client
        if scheme == "http":
            return http.client.HTTPConnection(netloc, timeout=self.config.timeout)
        return http.client.HTTPSConnection(netloc, timeout=self.config.timeout,
                                           context=self._context(netloc))

    def _open(self, method: str, url: str, headers: dict, auth: bool = True, hops: int = 5):
        """(connection, response) with redirects followed. Credentials (``self.auth``, or an
        Authorization among ``headers``) stay with the origin (scheme and host) they were
        meant for: a redirect elsewhere is followed without them."""
        import http.client
        import ssl
        parts = urllib.parse.urlsplit(url)
        conn = self._connect(parts.scheme, parts.netloc)
        h = dict(headers)
        if auth and self.auth:
            h["Authorization"] = self.auth
        path = parts.path + ("?" + parts.query if parts.query else "")
        try:
            conn.request(method, path, headers=h)
            resp = conn.getresponse()
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise RegistryError(f"{self.ref.name}: {parts.netloc}: TLS certificate not trusted "
                                f"({e.verify_message}): give its CA in the registry certs "
                                "directory or the hosts file") from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise RegistryError(f"{self.ref.name}: {parts.netloc}: {e}") from None
        if resp.status in (301, 302, 303, 307, 308) and hops > 0:
            location = urllib.parse.urljoin(url, resp.getheader("Location", ""))
            resp.read()
            conn.close()
            there = urllib.parse.urlsplit(location)
            if (there.scheme, there.netloc) != (parts.scheme, parts.netloc):
                auth = False
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            return self._open(method, location, headers, auth=auth, hops=hops - 1)
        return conn, resp

    def request(self, method: str, path: str, headers: dict | None = None):
        """(connection, response) for ``/v2/<repo>/<path>``, after auth and mirrors."""
        last = None
        for host in self.hosts:
            if "://" in host:  # a mirror endpoint given as a URL: its scheme says
                url = f"{host.rstrip('/')}/v2/{self.ref.repo}/{path}"
            else:
                plain = self.config.insecure or (self.plain_http and is_local(host))
                scheme = "http" if plain else "https"
                url = f"{scheme}://{host}/v2/{self.ref.repo}/{path}"
            try:
                conn, resp = self._open(method, url, headers or {})
            except RegistryError:
                if host == self.hosts[-1]:
                    raise
                continue  # a mirror that does not answer: the next one, then the registry
            if resp.status == 401 and self._authenticate(resp):
                resp.read()
                conn.close()
                conn, resp = self._open(method, url, headers or {})
            if resp.status == 200 or host == self.hosts[-1]:
                return conn, resp
            last = resp
            resp.read()
            conn.close()
        return conn, last

    def _authenticate(self, resp) -> bool:
        challenge = resp.getheader("WWW-Authenticate", "")
        scheme, _, params = challenge.partition(" ")
        creds = ""
        if self.config.username:
            creds = base64.b64encode(
                f"{self.config.username}:{self.config.password}".encode()).decode()
        if scheme.lower() == "basic":
            if not creds or self.auth == "Basic " + creds:
                return False
            self.auth = "Basic " + creds
            return True
        if scheme.lower() != "bearer":
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", "")
        if not realm:
            return False
        fields.setdefault("scope", f"repository:{self.ref.repo}:pull")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(fields)
        conn, tresp = self._open("GET", url, {"Authorization": "Basic " + creds} if creds else {},
                                 auth=False)
        try:
            body = tresp.read(1 << 20)
        finally:
            conn.close()
        if tresp.status != 200:
            reason = "unauthorized" if tresp.status in (401, 403) else ""
            raise RegistryError(f"{self.ref.name}: {reason or 'token service failed'} (the token "
                                f"service answered HTTP {tresp.status})", reason)
        try:
            token = json.loads(body or b"{}")
            token = token.get("token") or token.get("access_token")
        except (ValueError, AttributeError):
            token = ""
        if not token or not isinstance(token, str):
            raise RegistryError(f"{self.ref.name}: unauthorized (the token service at "
                                f"{realm} answered no token)", "unauthorized")
        self.auth = "Bearer " + token
        return True

    def _fail(self, resp, what: str) -> RegistryError:
        reason = {401: "unauthorized", 403: "forbidden", 404: "not found"}.get(
            resp.status, f"HTTP {resp.status}")
        return RegistryError(f"{self.ref.name}: {what}: {reason}",
                             reason if resp.status in (401, 403, 404) else "")

    # -- API ----------------------------------------------------------------------------------------
    def manifest(self, ref: str) -> tuple[str, bytes]:
        """(media type, bytes) of the manifest or index ``ref`` (a tag or a digest)."""
        conn, resp = self.request("GET", f"manifests/{ref}",
                                  {"Accept": ", ".join(MANIFEST_TYPES)})
        try:
            if resp.status != 200:
                raise self._fail(resp, f"manifest {ref}")
            body = resp.read(MAX_MANIFEST + 1)
            if len(body) > MAX_MANIFEST:
                raise RegistryError(f"{self.ref.name}: manifest {ref} larger than 4 MiB")
            media = (resp.getheader("Content-Type") or "").split(";")[0].strip()
            if media not in MANIFEST_TYPES:
                media = json.loads(body).get("mediaType", media)
            if media not in MANIFEST_TYPES:
                raise RegistryError(f"{self.ref.name}: unsupported media type {media!r}")
            return media, body
        except ValueError:
            raise RegistryError(f"{self.ref.name}: manifest {ref} is not JSON") from None
        finally:
            conn.close()

    def blob(self, digest: str, offset: int = 0):
        """(connection, response) streaming the blob (from ``offset`` where the registry
        supports ranges: the response status is then 206)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        conn, resp = self.request("GET", f"blobs/{digest}", headers)
        if resp.status not in (200, 206):
            err = self._fail(resp, f"blob {digest}")
            conn.close()
            raise err
        return conn, resp
